package room

import (
	"testing"
	"time"

	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

func heldUser(rev int64, more bool, kind streamv1.UpdateType, ids ...string) *item {
	u := &roomv1.UserUpdate{UpdateType: kind}
	for _, id := range ids {
		u.Users = append(u.Users, &roomv1.User{UserId: id, UserName: id})
	}
	return &item{userEvent: true, ev: &roomv1.RoomEvent{Revision: rev, More: more, Event: &roomv1.RoomEvent_UserUpdate{UserUpdate: u}}}
}

// TestMergeUsers checks what a subscriber of a large room is handed for
// held user updates: every user once, in order, runs of one kind merged,
// each message at the revision of its last update.
func TestMergeUsers(t *testing.T) {
	add, del := streamv1.UpdateType_UPDATE_TYPE_ADD, streamv1.UpdateType_UPDATE_TYPE_DELETE
	many := make([]*item, 0, maxBatchUsers+1)
	for i := range maxBatchUsers + 1 {
		many = append(many, heldUser(int64(i+1), false, add, string(rune('a'+i%26))))
	}
	type msg struct {
		kind  streamv1.UpdateType
		users int
		rev   int64
		more  bool
	}
	for _, tc := range []struct {
		name string
		in   []*item
		want []msg
	}{
		{"one", []*item{heldUser(5, false, add, "a")}, []msg{{add, 1, 5, false}}},
		{"joins merged", []*item{heldUser(5, false, add, "a"), heldUser(6, false, add, "b"), heldUser(7, true, add, "c")}, []msg{{add, 3, 7, true}}},
		{"kinds apart", []*item{heldUser(5, false, add, "a"), heldUser(6, false, del, "b"), heldUser(7, false, add, "c", "d")},
			[]msg{{add, 1, 5, false}, {del, 1, 6, false}, {add, 2, 7, false}}},
		{"capped", many, []msg{{add, maxBatchUsers, maxBatchUsers, false}, {add, 1, maxBatchUsers + 1, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.in[0].ev.GetUserUpdate().Users)
			got := mergeUsers(tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("%d messages, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				u := got[i].ev.GetUserUpdate()
				if u.UpdateType != w.kind || len(u.Users) != w.users || got[i].ev.Revision != w.rev || got[i].ev.More != w.more || !got[i].userEvent {
					t.Errorf("message %d: %v with %d users at %d (more %v), want %v", i, u.UpdateType, len(u.Users), got[i].ev.Revision, got[i].ev.More, w)
				}
			}
			if len(tc.in[0].ev.GetUserUpdate().Users) != before {
				t.Error("the ring's item was changed")
			}
		})
	}
}

// TestHoldWindow checks how long a room's user updates wait: the base
// window up to a thousand users, a base per thousand above, never more than
// maxHoldWindow (nor less than the base).
func TestHoldWindow(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		base time.Duration
		n    int
		want time.Duration
	}{
		{50 * ms, 101, 50 * ms},
		{50 * ms, 1999, 50 * ms},
		{50 * ms, 10_000, 500 * ms},
		{50 * ms, 100_000, time.Second},
		{2 * time.Second, 10_000, 2 * time.Second},
	} {
		if got := holdWindow(tc.base, tc.n); got != tc.want {
			t.Errorf("holdWindow(%v, %d) = %v, want %v", tc.base, tc.n, got, tc.want)
		}
	}
}
