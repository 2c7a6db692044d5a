package netshape

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Datagrams through two delayed sockets arrive in order, none before its
// time (half the RTT at each end), and Stats count them.
func TestConnDelayKeepsOrder(t *testing.T) {
	const n = 200
	rtt := 40 * time.Millisecond
	a := NewConn(listen(t), Link{RTT: rtt}, 1)
	b := NewConn(listen(t), Link{RTT: rtt}, 2)
	defer a.Close()
	defer b.Close()
	to := b.LocalAddr().(*net.UDPAddr)
	go func() {
		buf := make([]byte, 16)
		for i := range n {
			binary.BigEndian.PutUint64(buf, uint64(i))
			binary.BigEndian.PutUint64(buf[8:], uint64(time.Now().UnixNano()))
			if _, err := a.WriteTo(buf, to); err != nil {
				return
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	buf := make([]byte, 64)
	for i := range n {
		_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, from, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		got := time.Now()
		if k != 16 || from.String() != a.LocalAddr().String() {
			t.Fatalf("datagram %d: %d bytes from %v", i, k, from)
		}
		if seq := binary.BigEndian.Uint64(buf); seq != uint64(i) {
			t.Fatalf("datagram %d arrived as number %d: order not kept", seq, i)
		}
		if sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf[8:]))); got.Sub(sent) < rtt {
			t.Fatalf("datagram %d took %v, less than the two half RTTs %v", i, got.Sub(sent), rtt)
		}
	}
	if s := a.Stats(); s.Sent != n {
		t.Errorf("sender stats %+v, want %d sent", s, n)
	}
	if s := b.Stats(); s.Received != n || s.Dropped != 0 {
		t.Errorf("receiver stats %+v, want %d received", s, n)
	}
}

// Loss drops about its share of what arrives, never what is sent.
func TestConnLoss(t *testing.T) {
	const n = 2000
	for _, tc := range []struct {
		loss     float64
		min, max int64 // far outside the binomial spread
	}{{0, 0, 0}, {0.05, 50, 160}, {0.5, 850, 1150}} {
		send := listen(t)
		recv := NewConn(listen(t), Link{Loss: tc.loss}, 7)
		to := recv.LocalAddr().(*net.UDPAddr)
		done := make(chan int64)
		go func() {
			var got int64
			buf := make([]byte, 64)
			for {
				if _, _, err := recv.ReadFrom(buf); err != nil {
					done <- got
					return
				}
				got++
			}
		}()
		for i := range n {
			if _, err := send.WriteTo([]byte("x"), to); err != nil {
				t.Fatal(err)
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // stay within the socket buffer
			}
		}
		// Wait until everything sent was read, then stop the reader.
		for deadline := time.Now().Add(10 * time.Second); recv.Stats().Received < n && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		recv.Close()
		got := <-done
		s := recv.Stats()
		if s.Received != n || s.Dropped+got != n {
			t.Errorf("loss %v: stats %+v, %d delivered: every datagram is delivered or dropped", tc.loss, s, got)
		}
		if s.Dropped < tc.min || s.Dropped > tc.max {
			t.Errorf("loss %v: %d of %d dropped, want %d-%d", tc.loss, s.Dropped, n, tc.min, tc.max)
		}
		send.Close()
	}
}

// Close wakes a blocked reader and stops the sender, also with datagrams
// still queued.
func TestConnClose(t *testing.T) {
	c := NewConn(listen(t), Link{RTT: time.Hour}, 1)
	to := listen(t)
	defer to.Close()
	if _, err := c.WriteTo([]byte("queued for half an hour"), to.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	read := make(chan error)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 10))
		read <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteTo([]byte("x"), to.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A Net binds its sockets to the pinned port when asked for any, and puts
// them on the link.
func TestNetPinsPort(t *testing.T) {
	free := listen(t)
	port := free.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	n, err := NewNet(port, Link{Loss: 0.5}, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.UDPAddr).Port; got != port {
		t.Errorf("bound to port %d, want the pinned %d", got, port)
	}
	if _, ok := c.(*Conn); !ok {
		t.Errorf("ListenUDP returned a %T, want a *Conn", c)
	}
	if _, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil {
		t.Error("a second socket took the pinned port")
	}
}
