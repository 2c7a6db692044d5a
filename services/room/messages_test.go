package room

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	"google.golang.org/protobuf/proto"
)

// A replica hands its own messages to its subscribers when it sends them;
// should NATS echo one back (a connection opened with echo), it is dropped,
// so nobody gets it twice. Another replica's message is delivered.
func TestRelayDropsItsOwnEcho(t *testing.T) {
	r := newRelay(Config{Logger: slog.Default()})
	k := roomKey{1, "room"}
	h := &hub{key: k, subs: map[*subscriber]struct{}{}, users: map[string]*member{}}
	sub := newSubscriber(&keys.SessionRecord{SessionID: "s-bob", UserID: "bob"}, 0)
	h.subs[sub] = struct{}{}
	s := &Server{hubs: map[roomKey]*hub{k: h}, msgs: r}

	other := newRelay(Config{Logger: slog.Default()})
	event := func(from *relay) []byte {
		b, err := from.encode(&roomv1.RoomMessage{MessageId: "1", Content: "hi"}, nil, "s-alice", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r.receive(s, k, event(r))
	if q, _, _, _ := sub.take(); len(q) != 0 {
		t.Fatalf("an echo of the replica's own message was delivered again: %v", q)
	}
	r.receive(s, k, event(other))
	q, _, _, _ := sub.take()
	if len(q) != 1 || q[0].ev.GetMessage().GetContent() != "hi" {
		t.Fatalf("another replica's message: got %v, want it once", q)
	}
}

// The relay envelope carries a message, its receivers, its sender's
// session and its acceptance time across replicas unchanged; a damaged one
// is refused.
func TestRelayEnvelope(t *testing.T) {
	r := newRelay(Config{Logger: slog.Default()})
	at := time.Unix(1700000000, 123456789)
	for _, tc := range []struct {
		name string
		to   []string
	}{
		{"broadcast", nil},
		{"custom command", []string{"bob", "carol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := &roomv1.RoomMessage{MessageId: "7", Content: "hi", FromUser: &roomv1.User{UserId: "alice"}}
			b, err := r.encode(msg, tc.to, "s-alice", at)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := decodeEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(ev.msg, msg) || !slices.Equal(ev.to, tc.to) || ev.fromSession != "s-alice" || !ev.accepted.Equal(at) {
				t.Errorf("got %v %v %q %v", ev.msg, ev.to, ev.fromSession, ev.accepted)
			}
			if _, err := decodeEnvelope(b[:len(b)-1]); err == nil {
				t.Error("a truncated envelope decoded")
			}
		})
	}
}
