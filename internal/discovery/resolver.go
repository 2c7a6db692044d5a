package discovery

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc/resolver"
)

// scheme is the target scheme of Dial: "onair-etcd:///onair/services/auth".
const scheme = "onair-etcd"

// builder resolves a service prefix in etcd to its registered addresses.
//
// etcd's own resolver (client/v3/naming/resolver) says nothing until the
// first instance appears, so a call to a service with no instance waits
// for its deadline; this one reports the empty list at once, and a call
// fails fast with Unavailable instead, which the gateway turns into 503.
//
// It counts what it reports, so a failed call can say whether the service
// has no instance at all or none that answers.
type builder struct {
	cli       *clientv3.Client
	instances *atomic.Int64
}

func (b builder) Scheme() string { return scheme }

func (b builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	prefix := strings.TrimSuffix(target.URL.Path, "/") + "/"
	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdResolver{cancel: cancel, instances: b.instances}
	r.wg.Add(1)
	go r.run(ctx, b.cli, prefix, cc)
	return r, nil
}

type etcdResolver struct {
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	instances *atomic.Int64
}

// run reads the prefix, reports it, and then follows every change, reading
// it again if the watch breaks.
func (r *etcdResolver) run(ctx context.Context, cli *clientv3.Client, prefix string, cc resolver.ClientConn) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			cc.ReportError(err)
			pause(ctx)
			continue
		}
		addrs := map[string]string{}
		for _, kv := range resp.Kvs {
			addrs[string(kv.Key)] = addrOf(kv.Value)
		}
		r.report(cc, addrs)
		wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for w := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if w.Err() != nil {
				break
			}
			for _, ev := range w.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(addrs, string(ev.Kv.Key))
				} else {
					addrs[string(ev.Kv.Key)] = addrOf(ev.Kv.Value)
				}
			}
			r.report(cc, addrs)
		}
		stop()
		pause(ctx)
	}
}

// pause waits a little before reading again, so a failing etcd is not
// hammered.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(500 * time.Millisecond):
	}
}

func addrOf(value []byte) string {
	var ep endpoints.Endpoint
	if json.Unmarshal(value, &ep) != nil {
		return ""
	}
	return ep.Addr
}

func (r *etcdResolver) report(cc resolver.ClientConn, addrs map[string]string) {
	var eps []resolver.Endpoint
	for _, a := range addrs {
		if a != "" {
			eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
		}
	}
	if r.instances != nil {
		r.instances.Store(int64(len(eps)))
	}
	_ = cc.UpdateState(resolver.State{Endpoints: eps})
}

func (r *etcdResolver) ResolveNow(resolver.ResolveNowOptions) {}

func (r *etcdResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
