package room

// A room session: its lease and the keys attached to it.
//
// Shaped like etcd's client/v3/concurrency.Session: a roomSession owns one
// lease (granted, or taken from the replica's pool of empty ones), builds
// the operations that attach the session's keys to it, keeps it alive
// (heartbeats) and ends it (back to the pool when empty, revoked
// otherwise). Every lease grant and revoke of a session goes through this
// file; the rest of the package writes the keys these operations build.
//
// Every session's keys live under a lease of its own, so a client that
// stops heartbeating vanishes after the heartbeat timeout, whichever
// replica it talked to. Granting and revoking that lease were two Raft
// round trips of every login+logout, beside the login's and the logout's
// own transactions. A logout that removes every key of its session in its
// transactions leaves the lease empty; the replica keeps such leases
// (the pool) and the next login on it takes one instead of a grant, the
// lease's expiry known well enough from when it was last renewed:
// reusedFor bounds how old a renewal may be for a lease to be handed out
// without renewing it again.
//
// A pooled lease needs a fence. A login's transaction can be applied late:
// one sent to an etcd member that was then stopped (SIGSTOP, a long GC
// pause) sits in that member's socket, and when the member resumes it
// forwards the request to the new leader, after the client's retry went
// through and after the user logged out. Its comparisons (the user has no
// session) hold again by then, and its keys would come back under a lease
// that now belongs to another session and is kept alive by it: a ghost
// user. So each lease has a fence key under itself: a login compares the
// fence's revision with the one the lease had when the replica handed it
// out, and rewrites it. The first try to commit moves the fence on, and
// every other try of that login, however late, fails its comparison. The
// fence goes with its lease, so there is one per lease, never one per
// session.
//
// The replica also remembers the sessions it logged in, so the logout of
// one of them needs no read: the logout's transaction compares what it
// remembers with what etcd holds, and a session that changed elsewhere
// (kicked, renewed) fails the comparison and is read afresh.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// maxPooled bounds the empty leases a replica keeps: more than the logins
// a replica takes in a few hundred milliseconds under a flash crowd; an
// extra one is revoked.
const maxPooled = 1024

// maxRemembered bounds the sessions a replica remembers; past it, it
// forgets them all (a logout then reads its session, as before).
const maxRemembered = 200_000

// roomSession is one session's lease, from its grant (or reuse) to its end.
type roomSession struct {
	ss        *sessions
	lease     clientv3.LeaseID
	renewedAt time.Time
	// fence is the revision of the lease's fence key when it was handed
	// out (0: none yet); sent says a login transaction on it went to etcd.
	fence int64
	sent  bool
}

// liveSession is a session this replica logged in, with its lease's last
// renewal and its fence (the login's revision) known here.
type liveSession struct {
	rec       keys.SessionRecord
	renewedAt time.Time
	fence     int64
}

// sessions is the replica's session manager: the pool of empty leases,
// the sessions logged in here, and the revokes still to be done.
type sessions struct {
	etcd *clientv3.Client
	log  *slog.Logger
	// ctx and wg bound background revokes by the server's life.
	ctx context.Context
	wg  *sync.WaitGroup
	// ttl is a session lease's TTL; reusedFor how long after its last
	// renewal a lease is handed to a new session: the session's first
	// heartbeat comes within one heartbeat interval, so a lease with two
	// intervals left is as good as new.
	ttl, reusedFor time.Duration

	mu   sync.Mutex
	pool []roomSession
	byID map[string]*liveSession
	// known holds records of sessions this replica read (cache.go).
	known map[string]*keys.SessionRecord
}

func newSessions(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, etcd *clientv3.Client, timeout, heartbeat time.Duration) *sessions {
	return &sessions{etcd: etcd, log: log, ctx: ctx, wg: wg, ttl: timeout, reusedFor: timeout - 2*heartbeat, byID: map[string]*liveSession{}, known: map[string]*keys.SessionRecord{}}
}

// knownRecord returns a copy of session id's record if this replica logged
// it in or read it, or nil.
func (ss *sessions) knownRecord(id string) *keys.SessionRecord {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if l := ss.byID[id]; l != nil {
		c := l.rec
		return &c
	}
	if r := ss.known[id]; r != nil {
		c := *r
		return &c
	}
	return nil
}

// know remembers a session record read from etcd.
func (ss *sessions) know(rec *keys.SessionRecord) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.known) >= maxKnown {
		clear(ss.known)
	}
	c := *rec
	ss.known[rec.SessionID] = &c
}

// grant returns a session for a new login: a pooled lease that is fresh
// enough, or a new grant.
func (ss *sessions) grant(ctx context.Context) (*roomSession, error) {
	ss.mu.Lock()
	for len(ss.pool) > 0 {
		p := ss.pool[len(ss.pool)-1]
		ss.pool = ss.pool[:len(ss.pool)-1]
		if time.Since(p.renewedAt) < ss.reusedFor {
			ss.mu.Unlock()
			return &p, nil
		}
		// Too old to trust: it has no keys, and expires by itself.
	}
	ss.mu.Unlock()
	at := time.Now()
	g, err := ss.etcd.Grant(ctx, int64((ss.ttl+time.Second-1)/time.Second))
	if err != nil {
		return nil, err
	}
	return &roomSession{ss: ss, lease: g.ID, renewedAt: at}, nil
}

// attach returns the operations that write rec's keys (the session by
// user, by ID, and its room member) under the session's lease, and move
// its fence on. rec.Lease is set to it.
func (rs *roomSession) attach(rec *keys.SessionRecord) []clientv3.Op {
	rec.Lease = int64(rs.lease)
	rs.sent = true
	return append(sessionPuts(rec, clientv3.WithLease(rs.lease)),
		clientv3.OpPut(keys.LeaseFence(rec.Lease), "", clientv3.WithLease(rs.lease)))
}

// guard is the comparison that fails every try of a login but the first to
// commit on this lease (see the package doc above).
func (rs *roomSession) guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(keys.LeaseFence(int64(rs.lease))), "=", rs.fence)
}

// fenced reports whether a login's Else read of the fence (fenceRead)
// found it moved by someone else: a late try of an earlier login on the
// lease committed, and the lease holds its keys.
func (rs *roomSession) fenced(r *etcdserverpb.ResponseOp) bool {
	kvs := r.GetResponseRange().GetKvs()
	var rev int64
	if len(kvs) > 0 {
		rev = kvs[0].ModRevision
	}
	return rev != rs.fence
}

// fenceRead reads the lease's fence, in a login's Else.
func (rs *roomSession) fenceRead() clientv3.Op {
	return clientv3.OpGet(keys.LeaseFence(int64(rs.lease)))
}

// sessionPuts writes rec's keys with opt (a lease, or the one they have).
func sessionPuts(rec *keys.SessionRecord, opt clientv3.OpOption) []clientv3.Op {
	recJSON, _ := json.Marshal(rec)
	memberJSON, _ := json.Marshal(memberOf(rec))
	return []clientv3.Op{
		clientv3.OpPut(keys.Session(rec.AppID, rec.UserID), string(recJSON), opt),
		clientv3.OpPut(keys.SessionID(rec.SessionID), string(recJSON), opt),
		clientv3.OpPut(keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID), string(memberJSON), opt),
	}
}

// leavingOps mark rec's member left with why (watchers learn the reason;
// the key goes once the session is finished) and remove its session keys:
// the by-user key only while it is still this session's (a relogin may
// have replaced it).
func leavingOps(rec *keys.SessionRecord, reason roomv1.UserLeaveReason, code errcode.Code) []clientv3.Op {
	sessKey := keys.Session(rec.AppID, rec.UserID)
	return []clientv3.Op{clientv3.OpPut(keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID), leftJSON(rec, reason, code), clientv3.WithIgnoreLease()),
		clientv3.OpDelete(keys.SessionID(rec.SessionID)),
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(sessKey), "=", rec.Lease)},
			[]clientv3.Op{clientv3.OpDelete(sessKey)}, nil)}
}

// established records that rec, attached to this session, was committed
// at revision rev (the fence's revision now).
func (rs *roomSession) established(rec *keys.SessionRecord, rev int64) {
	rs.ss.mu.Lock()
	defer rs.ss.mu.Unlock()
	if len(rs.ss.byID) >= maxRemembered {
		clear(rs.ss.byID)
	}
	rs.ss.byID[rec.SessionID] = &liveSession{rec: *rec, renewedAt: rs.renewedAt, fence: rev}
}

// abandon gives up a session none of whose keys were written (its login
// failed, or found an earlier try's session): the lease goes back to the
// pool, or is revoked. One a login transaction was sent on is revoked: a
// late try of that transaction could still commit on it.
func (rs *roomSession) abandon() {
	if rs == nil {
		return
	}
	if rs.sent || !rs.ss.release(*rs) {
		rs.ss.revoke(rs.lease)
	}
}

// revoke ends a session whose keys may have been written (a login whose
// commit's outcome is unknown): they go with the lease.
func (rs *roomSession) revoke() { rs.ss.revoke(rs.lease) }

// keepAlive renews rec's lease (a heartbeat). A lease etcd no longer knows
// is a session that timed out.
func (ss *sessions) keepAlive(ctx context.Context, rec *keys.SessionRecord) error {
	at := time.Now()
	if _, err := ss.etcd.KeepAliveOnce(ctx, clientv3.LeaseID(rec.Lease)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return errcode.New(errcode.SessionNotFound, "the session timed out: log in again")
		}
		return errcode.Unavailable(err)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if l, ok := ss.byID[rec.SessionID]; ok {
		l.renewedAt = at
	}
	return nil
}

// end ends rec's lease once its session is over. empty says every key of
// the session is known gone: the lease then goes back to the pool when this
// replica knows when it was last renewed, and is revoked otherwise.
func (ss *sessions) end(rec *keys.SessionRecord, empty bool) {
	live, remembered := ss.forget(rec.SessionID)
	if empty && remembered && ss.release(roomSession{ss: ss, lease: clientv3.LeaseID(rec.Lease), renewedAt: live.renewedAt, fence: live.fence}) {
		return
	}
	ss.revoke(clientv3.LeaseID(rec.Lease))
}

// release keeps an empty lease for the next login, or says to revoke it
// (false) when the pool is full or the lease is too old.
func (ss *sessions) release(rs roomSession) bool {
	if ss.reusedFor <= 0 || time.Since(rs.renewedAt) >= ss.reusedFor {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.pool) >= maxPooled {
		return false
	}
	ss.pool = append(ss.pool, rs)
	return true
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
	delete(ss.known, id)
	return l, ok
}

// revoke ends a session's lease, and with it every key still attached. It
// rides through an etcd leader change (etcdclient); when etcd has no
// quorum it keeps trying in the background until the lease would have
// expired anyway, so a session this replica gave up on does not stay for a
// whole heartbeat timeout once etcd is back.
func (ss *sessions) revoke(id clientv3.LeaseID) {
	if id == clientv3.NoLease || ss.revokeOnce(id) {
		return
	}
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		until := time.Now().Add(ss.ttl)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for time.Now().Before(until) {
			select {
			case <-ss.ctx.Done():
				return
			case <-t.C:
			}
			if ss.revokeOnce(id) {
				return
			}
		}
	}()
}

func (ss *sessions) revokeOnce(id clientv3.LeaseID) bool {
	ctx, cancel := context.WithTimeout(ss.ctx, 5*time.Second)
	defer cancel()
	_, err := ss.etcd.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		ss.log.Warn("revoke session lease", "err", err)
		return false
	}
	return true
}
