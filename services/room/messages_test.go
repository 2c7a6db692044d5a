package room

import (
	"encoding/json"
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
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

	mb, err := proto.Marshal(&roomv1.RoomMessage{MessageId: "1", Content: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	event := func(origin string) []byte {
		b, err := json.Marshal(messageEvent{Origin: origin, Message: mb, FromSession: "s-alice"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r.receive(s, k, event(r.id))
	if q, _, _, _ := sub.take(); len(q) != 0 {
		t.Fatalf("an echo of the replica's own message was delivered again: %v", q)
	}
	r.receive(s, k, event("another-replica"))
	q, _, _, _ := sub.take()
	if len(q) != 1 || q[0].ev.GetMessage().GetContent() != "hi" {
		t.Fatalf("another replica's message: got %v, want it once", q)
	}
}
