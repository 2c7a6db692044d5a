//go:build linux

package rawconn

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
)

// countingPool is a buffer pool that counts the buffers out.
type countingPool struct {
	out atomic.Int64
}

func (p *countingPool) Get(n int) *[]byte {
	p.out.Add(1)
	b := make([]byte, n)
	return &b
}

func (p *countingPool) Put(*[]byte) { p.out.Add(-1) }

// TestReadOnReady checks the pooled read: what arrived comes in a buffer
// from the pool, and no buffer stays out when a read ends without data.
func TestReadOnReady(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, c *Conn, peer *net.TCPConn, pool *countingPool)
	}{
		{"waits for data and reads it into a pool buffer", func(t *testing.T, c *Conn, peer *net.TCPConn, pool *countingPool) {
			go func() {
				time.Sleep(20 * time.Millisecond) // the read waits in the poller first
				_, _ = peer.Write([]byte("hello"))
			}()
			buf, n, err := c.ReadOnReady(1024, pool)
			if err != nil || string((*buf)[:n]) != "hello" {
				t.Fatalf("ReadOnReady = %q, %v; want \"hello\", nil", (*buf)[:n], err)
			}
			if pool.out.Load() != 1 {
				t.Fatalf("%d buffers out, want the one returned", pool.out.Load())
			}
		}},
		{"reads at most bufSize bytes", func(t *testing.T, c *Conn, peer *net.TCPConn, pool *countingPool) {
			_, _ = peer.Write([]byte("0123456789"))
			time.Sleep(20 * time.Millisecond)
			buf, n, err := c.ReadOnReady(4, pool)
			if err != nil || string((*buf)[:n]) != "0123" {
				t.Fatalf("ReadOnReady = %q, %v; want \"0123\", nil", (*buf)[:n], err)
			}
		}},
		{"the peer's close is EOF with no buffer out", func(t *testing.T, c *Conn, peer *net.TCPConn, pool *countingPool) {
			_ = peer.Close()
			if _, _, err := c.ReadOnReady(1024, pool); err != io.EOF {
				t.Fatalf("ReadOnReady after the peer closed: %v, want io.EOF", err)
			}
			if pool.out.Load() != 0 {
				t.Fatalf("%d buffers out, want 0", pool.out.Load())
			}
		}},
		{"a read deadline times out with no buffer out", func(t *testing.T, c *Conn, peer *net.TCPConn, pool *countingPool) {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := c.ReadOnReady(1024, pool); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadOnReady after its deadline: %v, want a timeout", err)
			}
			if pool.out.Load() != 0 {
				t.Fatalf("%d buffers out, want 0", pool.out.Load())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := pair(t)
			tt.run(t, c, peer, &countingPool{})
		})
	}
}

// countingConn counts the pooled reads gRPC makes on a wrapped connection.
type countingConn struct {
	*Conn
	reads *atomic.Int64
}

func (c countingConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	c.reads.Add(1)
	return c.Conn.ReadOnReady(bufSize, pool)
}

type countingListener struct {
	*Listener
	reads *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if rc, ok := c.(*Conn); ok {
		return countingConn{rc, l.reads}, err
	}
	return c, err
}

// A gRPC server with a read buffer reads a wrapped connection through
// ReadOnReady (so an idle connection pins no read buffer): this fails if
// a gRPC upgrade stops looking for the method.
func TestGRPCReadsThroughReadOnReady(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var reads atomic.Int64
	srv := grpc.NewServer(grpc.ReadBufferSize(1024))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(countingListener{l, &reads}) }()
	defer srv.Stop()
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if reads.Load() == 0 {
		t.Fatal("the server never read through ReadOnReady")
	}
}
