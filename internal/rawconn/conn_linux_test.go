//go:build linux

package rawconn

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns a wrapped server side and a plain client side of one
// loopback TCP connection.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	l, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc, ok := server.(*Conn)
	if !ok {
		t.Fatalf("accepted %T, want *rawconn.Conn", server)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return rc, client.(*net.TCPConn)
}

func TestWrap(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe unchanged", got)
	}
	d := &Dialer{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("Dialer.Dial = %T, want *rawconn.Conn", c)
	}
}

// TestConn checks what a user of net.Conn relies on, through the paths
// that differ from the standard ones: a write larger than the socket's
// buffers (it must wait in the poller and resume where it stopped), reads
// of what arrived, deadlines, and the end of the stream.
func TestConn(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, c *Conn, peer *net.TCPConn)
	}{
		{"a write larger than the socket buffers arrives whole", func(t *testing.T, c *Conn, peer *net.TCPConn) {
			// A small send buffer makes the write wait for room many
			// times (a small receive buffer would only make TCP slow).
			_ = c.SetWriteBuffer(8192)
			want := make([]byte, 4<<20)
			_, _ = rand.Read(want)
			done := make(chan error, 1)
			go func() {
				n, err := c.Write(want)
				if err == nil && n != len(want) {
					err = io.ErrShortWrite
				}
				done <- err
			}()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(peer, got); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the bytes read differ from the bytes written")
			}
		}},
		{"reads return what the peer wrote, in order", func(t *testing.T, c *Conn, peer *net.TCPConn) {
			want := make([]byte, 1<<20)
			_, _ = rand.Read(want)
			go func() {
				for b := want; len(b) > 0; b = b[min(len(b), 1000):] {
					_, _ = peer.Write(b[:min(len(b), 1000)])
				}
			}()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the bytes read differ from the bytes written")
			}
		}},
		{"a read deadline times out", func(t *testing.T, c *Conn, peer *net.TCPConn) {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := c.Read(make([]byte, 10))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read after its deadline: %v, want a timeout", err)
			}
		}},
		{"the peer's close reads as EOF", func(t *testing.T, c *Conn, peer *net.TCPConn) {
			_, _ = peer.Write([]byte("bye"))
			_ = peer.Close()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "bye" {
				t.Fatalf("ReadAll = %q, %v; want \"bye\", nil", got, err)
			}
		}},
		{"writing to a reset connection fails with an error", func(t *testing.T, c *Conn, peer *net.TCPConn) {
			_ = peer.SetLinger(0) // close with a reset
			_ = peer.Close()
			var err error
			for i := 0; i < 100 && err == nil; i++ {
				_, err = c.Write([]byte("hello"))
				time.Sleep(time.Millisecond)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "write" {
				t.Fatalf("Write to a reset connection: %v, want a write *net.OpError", err)
			}
		}},
		{"a closed conn refuses reads and writes", func(t *testing.T, c *Conn, peer *net.TCPConn) {
			_ = c.Close()
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := pair(t)
			tt.run(t, c, peer)
		})
	}
}

// A listener with UserTimeout sets it on what it accepts, as gRPC would
// have on a plain TCP connection.
func TestListenerSetsUserTimeout(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.UserTimeout = 7 * time.Second
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*Conn).TCPConn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	_ = raw.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	})
	if gerr != nil || got != 7000 {
		t.Fatalf("TCP_USER_TIMEOUT = %d ms (%v), want 7000", got, gerr)
	}
}
