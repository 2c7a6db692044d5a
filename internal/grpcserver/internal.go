package grpcserver

import (
	"context"

	"github.com/onair-dev/onair/errcode"
)

// RequireInternal refuses a call without the cluster's internal key with
// PermissionDenied and errcode.InternalOnly. RPCs that only OnAir services
// may call (the stream registry, signature checks) start with it, because the
// public gRPC listener serves them to anyone who can reach it; the gateway
// never routes them and never forwards the key.
func RequireInternal(ctx context.Context) error {
	if IsInternal(ctx) {
		return nil
	}
	return errcode.New(errcode.InternalOnly, "this call is for OnAir services only (it needs the internal key)")
}
