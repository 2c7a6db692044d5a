package room

// Reads from the replica's watch cache.
//
// Each replica keeps one hub per active room (hub.go), a watch of the
// room's keys applied in revision order: who is in the room with which
// session, lease and token expiry, its streams and its extra info, as of
// the hub's revision. Calls that only need that state (a heartbeat's or a
// room message's session, a user list) read it there instead of making a
// linearizable etcd read per call, at the hub's revision, which is known:
//
//   - A hub is used only once it has applied every write this replica
//     made to its room (roomWrites), waiting for it a short while
//     (cacheWait) if need be: a client that logged in here and lists the
//     room's users sees itself. Otherwise, or with no hub here, etcd
//     answers as before.
//   - Nothing here changes what a subscriber receives: resuming by
//     revision still replays the hub's ring, gap-free.
//   - A session is taken from the cache only while the hub holds its
//     member with the same session ID and lease. A session that ended in
//     the last few milliseconds (the watch's lag) may still pass a
//     heartbeat or a send; the same race exists between an etcd read and
//     the call that follows it. What ends a session is always decided on
//     etcd: a heartbeat that finds the token expired in the cache reads
//     the session from etcd before ending it.

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// cacheWait bounds how long a read waits for a hub to catch up with this
// replica's own writes: a watch event follows its commit by well under a
// millisecond on a healthy etcd; past this, etcd answers instead.
const cacheWait = 50 * time.Millisecond

// maxKnown bounds the session records remembered for cache reads; past it
// they are all forgotten and read again.
const maxKnown = 100_000

// roomWrites is the revision of this replica's last write to each room.
type roomWrites struct {
	mu sync.Mutex
	m  map[roomKey]int64
}

// wrote records a write to room k committed at rev.
func (w *roomWrites) wrote(k roomKey, rev int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil || len(w.m) > 100_000 {
		// Forgetting is safe: a room not found reads as never written
		// here, and a client's own write is at most that old.
		w.m = map[roomKey]int64{}
	}
	w.m[k] = max(w.m[k], rev)
}

// last is the revision of this replica's last write to room k.
func (w *roomWrites) last(k roomKey) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[k]
}

// currentHub returns room k's hub once it has applied this replica's
// writes, or nil.
func (s *Server) currentHub(ctx context.Context, k roomKey) *hub {
	s.mu.Lock()
	h := s.hubs[k]
	s.mu.Unlock()
	if h == nil || !h.reach(ctx, s.writes.last(k), cacheWait) {
		return nil
	}
	return h
}

// cachedSession returns session id without an etcd read when this
// replica's hub of its room holds it; otherwise as s.session. A session's
// app, room, user and lease never change, so its record is remembered
// (sess.known); its token expiry is the hub's.
func (s *Server) cachedSession(ctx context.Context, id string) (*keys.SessionRecord, error) {
	if rec := s.sess.knownRecord(id); rec != nil {
		if h := s.currentHub(ctx, roomKey{rec.AppID, rec.RoomID}); h != nil {
			if exp, ok := h.session(rec.UserID, id, rec.Lease); ok {
				rec.TokenExpire = exp
				return rec, nil
			}
		}
	}
	rec, err := s.session(ctx, id)
	if err != nil {
		return nil, err
	}
	s.sess.know(rec)
	return rec, nil
}

// session reports whether the room has userID in it with that session and
// lease, and its token expiry.
func (h *hub) session(userID, sessionID string, lease int64) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.users[userID]
	if h.failed != nil || m == nil || m.SessionID != sessionID || m.Lease != lease {
		return 0, false
	}
	return m.TokenExpire, true
}

// reach waits up to d for the hub to have applied revision rev.
func (h *hub) reach(ctx context.Context, rev int64, d time.Duration) bool {
	var t *time.Timer
	for {
		h.mu.Lock()
		ok, failed, ch := h.rev >= rev, h.failed != nil, h.advanced
		h.mu.Unlock()
		if failed {
			return false
		}
		if ok {
			return true
		}
		if t == nil {
			t = time.NewTimer(d)
			defer t.Stop()
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// listUsers pages through the hub's users in user ID order, as the etcd
// listing does.
func (h *hub) listUsers(size uint32, after string) ([]*roomv1.User, string, uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.users))
	for id := range h.users {
		if id > after {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, strings.Compare)
	next := ""
	if len(ids) > int(size) {
		ids, next = ids[:size], ids[size-1]
	}
	users := make([]*roomv1.User, len(ids))
	for i, id := range ids {
		users[i] = &roomv1.User{UserId: id, UserName: h.users[id].UserName}
	}
	return users, next, uint32(len(h.users))
}
