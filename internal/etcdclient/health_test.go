package etcdclient_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/onair-dev/onair/internal/etcdclient"
)

// stallProxy forwards TCP to a member and can stall: connections stay open
// and nothing is forwarded, as with a member stopped by SIGSTOP.
type stallProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	thawed chan struct{} // closed while not stalled
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{l: l, target: target, thawed: make(chan struct{})}
	close(p.thawed)
	t.Cleanup(func() { l.Close() })
	go p.serve()
	return p
}

func (p *stallProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			thawed := p.thawed
			p.mu.Unlock()
			<-thawed
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		if on {
			p.thawed = make(chan struct{})
		}
	default:
		if !on {
			close(p.thawed)
		}
	}
}

// A member that stalls (its connections open, nothing answered) costs a
// client one lost try, not every call for as long as it stalls: each of
// three members stalls in turn, longer than a lease's TTL, while a client
// writes and keeps a 2 s lease alive. Every write succeeds and the lease
// lives throughout.
func TestStalledMemberIsKeptOffCallsAndKeepAlives(t *testing.T) {
	members := threeMembers(t)
	var proxies []*stallProxy
	var eps []string
	for _, m := range members {
		target := m.Endpoints()[0][len("http://"):]
		p := newStallProxy(t, target)
		proxies = append(proxies, p)
		// A member's Close waits for its connections: none may stay stalled.
		t.Cleanup(func() { p.stall(false) })
		eps = append(eps, "http://"+p.l.Addr().String())
	}
	cli, err := etcdclient.New(etcdclient.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(2))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for i, p := range proxies {
		p.stall(true)
		end := time.Now().Add(3 * time.Second)
		for n := 0; time.Now().Before(end); n++ {
			// A caller's deadline: a call that waited on the stalled
			// member for its whole stall would miss it.
			cctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
			_, err := cli.Put(cctx, "/k", "v", clientv3.WithLease(sess.Lease()))
			cancel()
			if err != nil {
				t.Fatalf("put %d while member %d stalls: %v", n, i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		p.stall(false)
		select {
		case <-sess.Done():
			t.Fatalf("the lease's keep-alive ended while member %d stalled", i)
		default:
		}
	}
	ttl, err := cli.TimeToLive(ctx, sess.Lease())
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL <= 0 {
		t.Fatalf("the lease expired while members stalled in turn (TTL %d)", ttl.TTL)
	}
}
