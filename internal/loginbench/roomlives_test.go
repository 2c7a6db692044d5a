package loginbench

import (
	"testing"

	"github.com/onair-dev/onair/internal/callback"
)

func TestRoomLives(t *testing.T) {
	ev := func(name, life string) callback.Event {
		return callback.Event{Event: name, RoomSessionID: life}
	}
	for _, tt := range []struct {
		name string
		evs  []callback.Event
		want RoomLives
	}{
		{"whole lives", []callback.Event{
			ev(callback.RoomCreate, "a"), ev(callback.RoomLogin, "a"), ev(callback.RoomLogout, "a"), ev(callback.RoomClose, "a"),
			ev(callback.RoomCreate, "b"), ev(callback.RoomLogin, "b"),
		}, RoomLives{Lives: 2}},
		{"stream callbacks are not counted", []callback.Event{ev(callback.StreamCreate, "")}, RoomLives{}},
		{"no create", []callback.Event{ev(callback.RoomLogin, "a"), ev(callback.RoomClose, "a")},
			RoomLives{Lives: 1, NoCreate: 1}},
		{"create after a login", []callback.Event{ev(callback.RoomLogin, "a"), ev(callback.RoomCreate, "a")},
			RoomLives{Lives: 1, CreateNotFirst: 1}},
		{"two closes", []callback.Event{ev(callback.RoomCreate, "a"), ev(callback.RoomClose, "a"), ev(callback.RoomClose, "a")},
			RoomLives{Lives: 1, Repeated: 1, AfterClose: 1}},
		{"logout after close", []callback.Event{ev(callback.RoomCreate, "a"), ev(callback.RoomClose, "a"), ev(callback.RoomLogout, "a")},
			RoomLives{Lives: 1, AfterClose: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ls := lives{}
			for _, e := range tt.evs {
				ls.add(e)
			}
			if got := ls.check(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got := ls.check().OK(); got != (tt.want == RoomLives{Lives: tt.want.Lives}) {
				t.Errorf("OK() = %v", got)
			}
		})
	}
}
