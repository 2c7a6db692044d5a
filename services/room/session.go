package room

// A room session's lease and the replica's memory of the sessions it made.
//
// Every session's keys live under a lease of its own, so a client that
// stops heartbeating vanishes after the heartbeat timeout, whichever
// replica it talked to. Granting and revoking that lease were two Raft
// round trips of every login+logout, beside the login's and the logout's
// own transactions. A logout that removes every key of its session in its
// transactions leaves the lease empty; the replica keeps such leases
// (leasePool) and the next login on it takes one instead of a grant, the
// lease's expiry known well enough from when it was last renewed:
// reusedFor bounds how old a renewal may be for a lease to be handed out
// without renewing it again.
//
// The replica also remembers the sessions it logged in (sessions), so the
// logout of one of them needs no read: the logout's transaction compares
// what it remembers with what etcd holds, and a session that changed
// elsewhere (kicked, renewed) fails the comparison and is read afresh.

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/keys"
)

// maxPooled bounds the empty leases a replica keeps: more than the logins
// a replica takes in a few hundred milliseconds under a flash crowd; an
// extra one is revoked.
const maxPooled = 1024

// maxRemembered bounds the sessions a replica remembers; past it, it
// forgets them all (a logout then reads its session, as before).
const maxRemembered = 200_000

// pooledLease is an empty session lease and the last time it was renewed.
type pooledLease struct {
	id        clientv3.LeaseID
	renewedAt time.Time
}

// liveSession is a session this replica logged in, with its lease's last
// renewal known here.
type liveSession struct {
	rec       keys.SessionRecord
	renewedAt time.Time
}

// sessions holds the leases and sessions described above.
type sessions struct {
	etcd *clientv3.Client
	// ttl is a session lease's TTL; reusedFor how long after its last
	// renewal a lease is handed to a new session: the session's first
	// heartbeat comes within one heartbeat interval, so a lease with two
	// intervals left is as good as new.
	ttl, reusedFor time.Duration

	mu   sync.Mutex
	pool []pooledLease
	byID map[string]*liveSession
}

func newSessions(etcd *clientv3.Client, timeout, heartbeat time.Duration) *sessions {
	return &sessions{etcd: etcd, ttl: timeout, reusedFor: timeout - 2*heartbeat, byID: map[string]*liveSession{}}
}

// lease returns a lease for a new session and when it was last renewed:
// a pooled one that is fresh enough, or a new grant.
func (ss *sessions) lease(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	ss.mu.Lock()
	for len(ss.pool) > 0 {
		p := ss.pool[len(ss.pool)-1]
		ss.pool = ss.pool[:len(ss.pool)-1]
		if time.Since(p.renewedAt) < ss.reusedFor {
			ss.mu.Unlock()
			return p.id, p.renewedAt, nil
		}
		// Too old to trust: it has no keys, and expires by itself.
	}
	ss.mu.Unlock()
	at := time.Now()
	g, err := ss.etcd.Grant(ctx, int64((ss.ttl+time.Second-1)/time.Second))
	if err != nil {
		return clientv3.NoLease, time.Time{}, err
	}
	return g.ID, at, nil
}

// release keeps an empty lease for the next login, or says to revoke it
// (false) when the pool is full or the lease is too old.
func (ss *sessions) release(id clientv3.LeaseID, renewedAt time.Time) bool {
	if ss.reusedFor <= 0 || time.Since(renewedAt) >= ss.reusedFor {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.pool) >= maxPooled {
		return false
	}
	ss.pool = append(ss.pool, pooledLease{id, renewedAt})
	return true
}

// remember records a session this replica logged in.
func (ss *sessions) remember(rec *keys.SessionRecord, renewedAt time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.byID) >= maxRemembered {
		clear(ss.byID)
	}
	ss.byID[rec.SessionID] = &liveSession{rec: *rec, renewedAt: renewedAt}
}

// recall returns a remembered session.
func (ss *sessions) recall(id string) (*liveSession, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	l, ok := ss.byID[id]
	if !ok {
		return nil, false
	}
	c := *l
	return &c, true
}

// forget drops a session that ended, and returns what was remembered.
func (ss *sessions) forget(id string) (*liveSession, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	l, ok := ss.byID[id]
	delete(ss.byID, id)
	return l, ok
}

// renewed notes a heartbeat of a remembered session.
func (ss *sessions) renewed(id string, at time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if l, ok := ss.byID[id]; ok {
		l.renewedAt = at
	}
}
