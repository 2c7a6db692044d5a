package room

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/testkit"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// A login's transaction that etcd applies late (held by a stopped member
// until after the user logged out) must not bring the session back on its
// lease, which the pool has handed to the next login; and that next
// login's own transaction must still go through.
func TestLateLoginOnPooledLease(t *testing.T) {
	cli := testkit.Etcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	ss := newSessions(ctx, &wg, slog.New(slog.NewTextHandler(io.Discard, nil)), cli, 90*time.Second, 30*time.Second)

	type login struct {
		rec   keys.SessionRecord
		conds []clientv3.Cmp
		ops   []clientv3.Op
	}
	prepare := func(rs *roomSession, user, id string) login {
		l := login{rec: keys.SessionRecord{SessionID: id, AppID: 1, RoomID: "r", UserID: user}}
		l.conds = []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(keys.Session(1, user)), "=", 0), rs.guard()}
		l.ops = rs.attach(&l.rec)
		return l
	}
	commit := func(l login) *clientv3.TxnResponse {
		t.Helper()
		resp, err := cli.Txn(ctx).If(l.conds...).Then(l.ops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	logout := func(l login) {
		t.Helper()
		resp, err := cli.Txn(ctx).Then(leavingOps(&l.rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_LOGOUT, 0)...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(keys.RoomUser(1, "r", l.rec.UserID)), "=", resp.Header.Revision)).
			Then(clientv3.OpDelete(keys.RoomUser(1, "r", l.rec.UserID))).Commit(); err != nil {
			t.Fatal(err)
		}
		ss.end(&l.rec, true)
	}
	attached := func(lease clientv3.LeaseID) int {
		t.Helper()
		resp, err := cli.TimeToLive(ctx, lease, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Keys)
	}

	rs, err := ss.grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := prepare(rs, "alice", "s1")
	resp := commit(first)
	if !resp.Succeeded {
		t.Fatal("first login did not commit")
	}
	rs.established(&first.rec, resp.Header.Revision)
	logout(first)

	next, err := ss.grant(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next.lease != rs.lease {
		t.Fatalf("the next login got lease %x, want the pooled %x", next.lease, rs.lease)
	}
	// The first login's transaction again, as a held request would be
	// applied: after the logout, with alice's session key gone.
	if commit(first).Succeeded {
		t.Fatal("a late try of a login that was logged out committed again")
	}
	if n := attached(rs.lease); n != 1 { // the fence alone
		t.Fatalf("%d keys on the pooled lease after the late try, want only its fence", n)
	}
	bob := prepare(next, "bob", "s2")
	if !commit(bob).Succeeded {
		t.Fatal("the next login on the pooled lease did not commit")
	}
	// A late try of bob's own login, with bob still in, and after his
	// session moved on: it fails either way.
	if commit(bob).Succeeded {
		t.Fatal("a second try of the same login committed twice")
	}
}
