package room

// Fan-out of a large room's user updates.
//
// In a room of N users who all asked for user updates, each join is told to
// N subscribers: a flash crowd of N joins is N² deliveries. Handing every
// join to every subscriber on its own made each of the N² a queue append, a
// wake-up, a protobuf encoding and a stream write, and left each subscriber
// to merge what piled up (the old per-subscriber pause). The hub instead
// holds a large room's user updates for a window and hands them out
// merged, up to maxBatchUsers users a message: a subscriber gets one
// message per window (and per kind of update) whatever the join rate, and
// the merged message is built once for all of them.
//
// The window grows with the room (holdWindow): what the fan-out costs is
// hand-offs per second times subscribers, so a window of
// Config.UserBatchWindow per thousand users keeps that below about 20,000
// stream sends a second per room (at the default 50 ms) whatever its size,
// up to maxHoldWindow: a user of a room of 10,000 learns of a join within
// half a second, and of 20,000 or more within a second.
//
// The ring and the state take every update at once; only the hand-off to
// subscribers waits. So that a subscriber never sees an update twice or out
// of order, everything else that reaches subscribers goes after the held
// updates: any other item, a room message, a new subscriber's snapshot or
// resume from the ring, and a resync snapshot each hand the held updates
// out first (flushPending).

import (
	"slices"
	"time"

	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// largeRoomUsers is the room size from which user updates are held and
// merged: below it a join is told at once, as before.
const largeRoomUsers = 100

// maxHoldWindow bounds how long a user update is held (see holdWindow).
const maxHoldWindow = time.Second

// holdWindow is how long a room of n users holds its user updates.
func holdWindow(base time.Duration, n int) time.Duration {
	return min(base*time.Duration(max(1, n/1000)), max(base, maxHoldWindow))
}

// hold keeps a large room's user update for the next merged hand-off and
// reports whether it did. Called with h.mu held.
func (h *hub) hold(it *item) bool {
	if !it.userEvent || h.s.cfg.UserBatchWindow <= 0 || len(h.users) <= largeRoomUsers {
		return false
	}
	h.pending = append(h.pending, it)
	if h.pendingTimer == nil {
		h.pendingTimer = time.AfterFunc(holdWindow(h.s.cfg.UserBatchWindow, len(h.users)), func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.flushPending()
		})
	}
	return true
}

// flushPending hands the held user updates to the subscribers, merged.
// Called with h.mu held.
func (h *hub) flushPending() {
	if h.pendingTimer != nil {
		h.pendingTimer.Stop()
		h.pendingTimer = nil
	}
	if len(h.pending) == 0 {
		return
	}
	merged := mergeUsers(h.pending)
	h.pending = nil
	for _, it := range merged {
		for sub := range h.subs {
			sub.push(it)
		}
	}
}

// mergeUsers merges runs of user updates of one kind and reason into
// single items of at most maxBatchUsers users, each with the revision and
// More of the last update it holds. The items given are not changed: they
// stay in the ring as they are.
func mergeUsers(items []*item) []*item {
	out := make([]*item, 0, 1)
	var users []*roomv1.User
	for i, it := range items {
		cu := it.ev.GetUserUpdate()
		users = append(users, cu.Users...)
		next := (*roomv1.UserUpdate)(nil)
		if i+1 < len(items) {
			next = items[i+1].ev.GetUserUpdate()
		}
		if next != nil && next.UpdateType == cu.UpdateType && next.Reason == cu.Reason && len(users)+len(next.Users) <= maxBatchUsers {
			continue
		}
		if len(users) == len(cu.Users) && len(out) == 0 && next == nil {
			return []*item{it} // a single update: as it is
		}
		out = append(out, &item{userEvent: true, ev: &roomv1.RoomEvent{Revision: it.ev.Revision, More: it.ev.More,
			Event: &roomv1.RoomEvent_UserUpdate{UserUpdate: &roomv1.UserUpdate{UpdateType: cu.UpdateType, Reason: cu.Reason, Users: slices.Clip(users)}}}})
		users = nil
	}
	return out
}
