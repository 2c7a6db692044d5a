package room

import (
	"context"
	"slices"
	"testing"
	"time"
)

// A user list from the watch cache pages like the etcd listing: user ID
// order, the last ID of a full page as the next token, the room's count.
func TestHubListUsers(t *testing.T) {
	h := &hub{users: map[string]*member{}, advanced: make(chan struct{})}
	for _, id := range []string{"d", "a", "c", "b", "e"} {
		h.users[id] = &member{UserID: id, UserName: "n" + id}
	}
	for _, tc := range []struct {
		name      string
		size      uint32
		after     string
		wantIDs   []string
		wantNext  string
		wantCount uint32
	}{
		{"first page", 2, "", []string{"a", "b"}, "b", 5},
		{"middle page", 2, "b", []string{"c", "d"}, "d", 5},
		{"last page", 2, "d", []string{"e"}, "", 5},
		{"exact fit", 5, "", []string{"a", "b", "c", "d", "e"}, "", 5},
		{"past the end", 2, "e", []string{}, "", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users, next, count := h.listUsers(tc.size, tc.after)
			ids := []string{}
			for _, u := range users {
				ids = append(ids, u.UserId)
				if u.UserName != "n"+u.UserId {
					t.Errorf("user %s named %q", u.UserId, u.UserName)
				}
			}
			if !slices.Equal(ids, tc.wantIDs) || next != tc.wantNext || count != tc.wantCount {
				t.Errorf("got %v next %q count %d, want %v next %q count %d", ids, next, count, tc.wantIDs, tc.wantNext, tc.wantCount)
			}
		})
	}
}

// A cache read waits for the hub to apply the replica's own write, and
// gives up (etcd answers instead) when it does not come.
func TestHubReach(t *testing.T) {
	h := &hub{rev: 10, advanced: make(chan struct{})}
	if !h.reach(context.Background(), 10, time.Hour) {
		t.Fatal("a hub at the revision asked for is not current")
	}
	done := make(chan bool)
	go func() { done <- h.reach(context.Background(), 12, time.Hour) }()
	h.mu.Lock()
	h.rev = 12
	close(h.advanced)
	h.advanced = make(chan struct{})
	h.mu.Unlock()
	if !<-done {
		t.Fatal("a hub that reached the revision is not current")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if h.reach(ctx, 13, time.Hour) {
		t.Fatal("a hub behind the revision is current")
	}
}
