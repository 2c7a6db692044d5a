package etcdclient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/etcdclient"
)

// threeMembers starts a three-member cluster on loopback.
func threeMembers(t *testing.T) []*embedetcd.Server {
	t.Helper()
	var peers, clients, initial []string
	for i := range 3 {
		peers = append(peers, freeAddr(t))
		clients = append(clients, freeAddr(t))
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, peers[i]))
	}
	members := make([]*embedetcd.Server, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			members[i], errs[i] = embedetcd.Start(context.Background(), embedetcd.Config{Name: fmt.Sprintf("m%d", i),
				Dir: t.TempDir(), ClientAddr: clients[i], PeerAddr: peers[i], InitialCluster: strings.Join(initial, ",")})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.Close()
		}
	})
	return members
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A leader that dies mid-traffic costs callers a wait, not an error: every
// write made while the others elect a new leader succeeds. Then, with a
// second member gone, there is no quorum and calls fail with
// ErrUnavailable, saying so.
func TestRidesThroughLeaderChangeFailsWithoutQuorum(t *testing.T) {
	members := threeMembers(t)
	var eps []string
	for _, m := range members {
		eps = append(eps, m.Endpoints()...)
	}
	cli, err := etcdclient.New(etcdclient.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/k", "0"); err != nil {
		t.Fatal(err)
	}
	leader := -1
	for i, m := range members {
		if m.IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	members[leader].Kill()
	// Transactions the caller marks as checked, puts and reads: all go
	// through the election.
	rctx := etcdclient.Retryable(ctx)
	for i := range 20 {
		v := fmt.Sprint(i + 1)
		resp, err := cli.Txn(rctx).If(clientv3.Compare(clientv3.Value("/k"), "=", fmt.Sprint(i))).
			Then(clientv3.OpPut("/k", v)).Else(clientv3.OpGet("/k")).Commit()
		if err != nil {
			t.Fatalf("txn %d across the leader change: %v", i, err)
		}
		if !resp.Succeeded {
			// A try whose reply was lost went through: the value says so.
			if got := string(resp.Responses[0].GetResponseRange().GetKvs()[0].Value); got != v {
				t.Fatalf("txn %d: /k is %q, want %q", i, got, v)
			}
		}
		if _, err := cli.Get(ctx, "/k"); err != nil {
			t.Fatalf("get %d across the leader change: %v", i, err)
		}
	}

	// One more member gone: one of three answers.
	for i, m := range members {
		if i != leader {
			m.Kill()
			break
		}
	}
	_, err = cli.Put(ctx, "/k", "x")
	if !errors.Is(err, etcdclient.ErrUnavailable) || !strings.Contains(err.Error(), "no quorum: 1 of 3") {
		t.Fatalf("put without quorum: %v, want ErrUnavailable for no quorum (1 of 3)", err)
	}
}
