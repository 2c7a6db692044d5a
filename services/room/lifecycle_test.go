package room

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/testkit"
)

// The lifecycle watcher closes an emptied room with room_close ordered
// after everything of the life it closes, even when it lags: the life it
// finds may have begun after the departure it is processing (the bench saw
// room_close delivered before its life's room_create).
func TestLifecycleCloseOrder(t *testing.T) {
	ctx := context.Background()
	cli := testkit.Etcd(t)
	s := &Server{cfg: Config{Etcd: cli, Now: time.Now}}
	const app = 7
	always := clientv3.Compare(clientv3.CreateRevision("/test/none"), "=", 0)

	for i, tc := range []struct {
		name string
		// lagging: the room's current life was created after the departure.
		lagging    bool
		wantReason int
	}{
		{"the departure's own life", false, callback.CloseKicked},
		{"a later life, watcher lagging", true, callback.CloseOffline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			room := "r" + string(rune('a'+i))
			putMeta := func(m roomMeta) int64 {
				b, _ := json.Marshal(m)
				resp, err := cli.Put(ctx, keys.RoomMeta(app, room), string(b))
				if err != nil {
					t.Fatal(err)
				}
				return resp.Header.Revision
			}
			// The life the member left, then (lagging) its close and a
			// later life, already empty again.
			putMeta(roomMeta{RoomSessionID: "life1"})
			left, _ := json.Marshal(member{UserID: "alice", SessionID: "s1", RoomSessionID: "life1", Left: true,
				Reason: callback.LogoutKicked})
			put, err := cli.Put(ctx, keys.RoomUser(app, room, "alice"), string(left))
			if err != nil {
				t.Fatal(err)
			}
			del, err := cli.Delete(ctx, keys.RoomUser(app, room, "alice"))
			if err != nil {
				t.Fatal(err)
			}
			departure := &clientv3.Event{Type: mvccpb.DELETE,
				Kv:     &mvccpb.KeyValue{Key: []byte(keys.RoomUser(app, room, "alice")), ModRevision: del.Header.Revision},
				PrevKv: &mvccpb.KeyValue{Key: []byte(keys.RoomUser(app, room, "alice")), Value: left, ModRevision: put.Header.Revision}}
			life, lifeCreated := "life1", int64(0)
			if tc.lagging {
				if _, err := cli.Delete(ctx, keys.RoomMeta(app, room)); err != nil {
					t.Fatal(err)
				}
				life = "life2"
				lifeCreated = putMeta(roomMeta{RoomSessionID: life, LastLeave: callback.LogoutDisconnect})
			}
			cur := callback.Cursor{Rev: del.Header.Revision}
			if _, err := cli.Put(ctx, keys.LifecycleCursor, cur.String()); err != nil {
				t.Fatal(err)
			}
			if _, err := s.commitLifecycle(ctx, always, nil, cur, callback.Cursor{Rev: del.Header.Revision + 1},
				[]*clientv3.Event{departure}); err != nil {
				t.Fatal(err)
			}
			resp, err := cli.Get(ctx, keys.CallbackRoomOutbox(app, room), clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			var closes []*callback.Record
			for _, kv := range resp.Kvs {
				r, err := callback.Decode(kv)
				if err != nil {
					t.Fatal(err)
				}
				if r.Event.Event == callback.RoomClose {
					closes = append(closes, r)
				}
			}
			if len(closes) != 1 {
				t.Fatalf("%d room_close callbacks, want 1", len(closes))
			}
			c := closes[0]
			if c.Event.RoomSessionID != life || c.Event.Reason != tc.wantReason {
				t.Errorf("room_close of %q with reason %d, want %q with %d", c.Event.RoomSessionID, c.Event.Reason, life, tc.wantReason)
			}
			if order := c.Order(); order < departure.Kv.ModRevision || order <= lifeCreated {
				t.Errorf("room_close ordered at revision %d: not after the departure (%d) and the life's creation (%d)",
					order, departure.Kv.ModRevision, lifeCreated)
			}
		})
	}
}
