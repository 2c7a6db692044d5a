package etcdclient

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRetryRule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		deadline bool
		k        kind
		marked   bool
		want     bool
	}{
		{"answer", rpctypes.ErrLeaseNotFound, false, idempotent, false, false},
		{"caller gave up", context.Canceled, false, idempotent, false, false},
		{"no leader, txn", rpctypes.ErrGRPCNoLeader, false, conditional, false, true},
		{"no leader, read", rpctypes.ErrNoLeader, false, idempotent, false, true},
		{"try deadline, read", context.DeadlineExceeded, true, idempotent, false, true},
		{"try deadline, txn", context.DeadlineExceeded, true, conditional, false, false},
		{"try deadline, marked txn", context.DeadlineExceeded, true, conditional, true, true},
		{"leader failed, txn", rpctypes.ErrGRPCTimeoutDueToLeaderFail, false, conditional, false, false},
		{"leader failed, marked txn", rpctypes.ErrGRPCTimeoutDueToLeaderFail, false, conditional, true, true},
		{"leader changed, read", rpctypes.ErrGRPCLeaderChanged, false, idempotent, false, true},
		{"connection, put", status.Error(codes.Unavailable, "connection refused"), false, idempotent, false, true},
		{"other status", status.Error(codes.InvalidArgument, "bad"), false, idempotent, false, false},
		{"plain error", errors.New("boom"), false, idempotent, false, false},
	} {
		if got := retry(tc.k, classify(tc.err, tc.deadline), tc.marked); got != tc.want {
			t.Errorf("%s: retry = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestQuorumRule(t *testing.T) {
	for _, tc := range []struct {
		answered, members int
		want              bool
	}{
		{0, 0, false}, {1, 1, true}, {0, 1, false},
		{2, 3, true}, {1, 3, false}, {3, 3, true},
		{2, 4, false}, {3, 4, true}, {3, 5, true}, {2, 5, false},
	} {
		if got := hasQuorum(tc.answered, tc.members); got != tc.want {
			t.Errorf("hasQuorum(%d of %d) = %v, want %v", tc.answered, tc.members, got, tc.want)
		}
	}
}
