package auth

// The apps as this replica last saw them: token verification reads them
// here instead of etcd.
//
// Every LoginRoom verifies a token, and the verification needs the app's
// secret and enabled services. Read from etcd, that was a linearizable
// range (a ReadIndex round trip and a gRPC call on etcd) per login, the
// largest share of etcd's reads under a flash crowd. Apps change rarely
// (an admin call), so the replica keeps them all from one read and a watch
// of the prefix, as a Kubernetes informer does.
//
// What a stale copy could do, and why it cannot last: a change reaches the
// copy within the watch's latency (milliseconds). A verification the copy
// fails (no such app, live streaming off, a token that does not verify
// with the secret) is tried again with a linearizable read, so a new app
// or a rotated secret works at once; only the other way round (a secret
// just rotated away, a service just disabled) is there a window, that
// watch latency. While the watch is down the copy is not used.

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
)

// appsPrefix holds every app (appKey).
const appsPrefix = "/onair/apps/"

// appCache mirrors appsPrefix while its watch runs.
type appCache struct {
	etcd *clientv3.Client

	mu    sync.RWMutex
	ready bool // the copy is the prefix at some revision, kept up by the watch
	apps  map[uint32]*authv1.App
}

// get returns app id from the copy; ok false: the copy is not ready (ask
// etcd). A nil app with ok true: no such app as of the copy.
func (c *appCache) get(id uint32) (app *authv1.App, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.ready {
		return nil, false
	}
	return c.apps[id], true
}

// run keeps the copy until ctx ends: a read of the prefix, then its watch
// from the next revision; a broken watch makes the copy unready until the
// next read.
func (c *appCache) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		resp, err := c.etcd.Get(ctx, appsPrefix, clientv3.WithPrefix())
		if err != nil {
			sleep(ctx, backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		apps := make(map[uint32]*authv1.App, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			if id, a := decodeApp(kv); a != nil {
				apps[id] = a
			}
		}
		c.mu.Lock()
		c.apps, c.ready = apps, true
		c.mu.Unlock()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for w := range c.etcd.Watch(wctx, appsPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if w.Err() != nil || w.Canceled {
				break
			}
			c.mu.Lock()
			for _, ev := range w.Events {
				id, a := decodeApp(ev.Kv)
				if ev.Type == mvccpb.DELETE {
					id = appID(ev.Kv.Key)
					a = nil
				}
				if a == nil {
					delete(c.apps, id)
				} else {
					c.apps[id] = a
				}
			}
			c.mu.Unlock()
		}
		cancel()
		c.mu.Lock()
		c.ready = false
		c.mu.Unlock()
	}
}

// appID is the AppID of an app's key (0: not one).
func appID(key []byte) uint32 {
	n, err := strconv.ParseUint(strings.TrimPrefix(string(key), appsPrefix), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// decodeApp decodes an app's key-value; a nil app: unreadable.
func decodeApp(kv *mvccpb.KeyValue) (uint32, *authv1.App) {
	app := new(authv1.App)
	if proto.Unmarshal(kv.Value, app) != nil {
		return appID(kv.Key), nil
	}
	return appID(kv.Key), app
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
