package room

import (
	"slices"
	"testing"

	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

func userItem(rev int64, t streamv1.UpdateType, reason roomv1.UserLeaveReason, ids ...string) *item {
	var users []*roomv1.User
	for _, id := range ids {
		users = append(users, &roomv1.User{UserId: id})
	}
	return &item{userEvent: true, ev: &roomv1.RoomEvent{Revision: rev,
		Event: &roomv1.RoomEvent_UserUpdate{UserUpdate: &roomv1.UserUpdate{UpdateType: t, Reason: reason, Users: users}}}}
}

func TestSubscriberWants(t *testing.T) {
	sub := newSubscriber(&keys.SessionRecord{SessionID: "s1", UserID: "alice", UserNotify: false}, 0)
	notify := newSubscriber(&keys.SessionRecord{SessionID: "s2", UserID: "bob", UserNotify: true}, 0)
	tests := []struct {
		name      string
		it        *item
		sub, noti bool
	}{
		{"user event needs notify", userItem(1, 0, 0, "x"), false, true},
		{"own message not echoed", &item{route: &route{fromSession: "s1"}, ev: &roomv1.RoomEvent{}}, false, true},
		{"setter not told of own info", &item{route: &route{fromUser: "bob"}, ev: &roomv1.RoomEvent{}}, true, false},
		{"command to listed users only", &item{route: &route{to: []string{"bob"}}, ev: &roomv1.RoomEvent{}}, false, true},
		{"session state for one session", &item{route: &route{forSession: "s1"}, ev: &roomv1.RoomEvent{}}, true, false},
		{"stream event for all", &item{ev: &roomv1.RoomEvent{}}, true, true},
	}
	for _, tt := range tests {
		if got := sub.wants(tt.it); got != tt.sub {
			t.Errorf("%s: alice wants = %v", tt.name, got)
		}
		if got := notify.wants(tt.it); got != tt.noti {
			t.Errorf("%s: bob wants = %v", tt.name, got)
		}
	}
}

func TestBatchMergesUserRunsAndSkipsSeen(t *testing.T) {
	add, del := streamv1.UpdateType_UPDATE_TYPE_ADD, streamv1.UpdateType_UPDATE_TYPE_DELETE
	logout, timeout := roomv1.UserLeaveReason_USER_LEAVE_REASON_LOGOUT, roomv1.UserLeaveReason_USER_LEAVE_REASON_HEARTBEAT_TIMEOUT
	items := []*item{
		userItem(5, add, 0, "a"),
		userItem(6, add, 0, "b"),
		userItem(7, add, 0, "c"),
		userItem(8, del, logout, "a"),
		userItem(9, del, timeout, "b"),
		{ev: &roomv1.RoomEvent{Revision: 10, Event: &roomv1.RoomEvent_StreamUpdate{}}},
		userItem(11, add, 0, "d"),
	}
	sub := newSubscriber(&keys.SessionRecord{UserNotify: true}, 0)
	sub.skipTo = 5
	out := batch(items, sub)
	var got []string
	for _, it := range out {
		s := ""
		if u := it.ev.GetUserUpdate(); u != nil {
			s = u.UpdateType.String() + ":" + u.Reason.String() + ":"
			for _, x := range u.Users {
				s += x.UserId
			}
		} else {
			s = "stream"
		}
		got = append(got, s+"@"+itoa(it.ev.Revision))
	}
	want := []string{
		"UPDATE_TYPE_ADD:USER_LEAVE_REASON_UNSPECIFIED:bc@7",
		"UPDATE_TYPE_DELETE:USER_LEAVE_REASON_LOGOUT:a@8",
		"UPDATE_TYPE_DELETE:USER_LEAVE_REASON_HEARTBEAT_TIMEOUT:b@9",
		"stream@10",
		"UPDATE_TYPE_ADD:USER_LEAVE_REASON_UNSPECIFIED:d@11",
	}
	if !slices.Equal(got, want) {
		t.Errorf("batch =\n %v\nwant\n %v", got, want)
	}
}

func itoa(n int64) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
