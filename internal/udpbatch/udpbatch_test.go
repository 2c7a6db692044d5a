package udpbatch

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// Every packet queued on a Conn, from many goroutines and more than a
// batch at once, arrives whole; writes after Close fail.
func TestBatchConnDeliversEveryPacket(t *testing.T) {
	src := loopbackUDP(t)
	bc := New(src)
	dst := loopbackUDP(t)
	_ = dst.SetReadBuffer(4 << 20)
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	const writers, each = 8, 3 * batchSize
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			b := make([]byte, 1200)
			for i := range each {
				binary.BigEndian.PutUint32(b, uint32(w*each+i))
				b[len(b)-1] = byte(i)
				if n, err := bc.WriteToAddrPort(b, to); err != nil || n != len(b) {
					t.Errorf("write: %d, %v", n, err)
					return
				}
			}
		})
	}
	seen := map[uint32]bool{}
	buf := make([]byte, 2000)
	_ = dst.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(seen) < writers*each {
		n, _, err := dst.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d of %d packets arrived: %v", len(seen), writers*each, err)
		}
		id := binary.BigEndian.Uint32(buf)
		if n != 1200 || buf[n-1] != byte(int(id)%each) || seen[id] {
			t.Fatalf("packet %d: %d bytes, last byte %d, seen before %v", id, n, buf[n-1], seen[id])
		}
		seen[id] = true
	}
	wg.Wait()
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bc.packets.Load(); got != writers*each {
		t.Errorf("%d packets counted as sent, want %d", got, writers*each)
	}
	if _, err := bc.WriteToAddrPort(buf[:10], to); err == nil {
		t.Error("a write after Close succeeded")
	}
}

// coalesce groups a batch per destination in queue order, each message of
// equal-size segments but a shorter last one, within the kernel's bounds.
func TestCoalesce(t *testing.T) {
	type pkt struct {
		dst  int
		size int
	}
	tests := []struct {
		name string
		in   []pkt
		want [][]int // per message: indexes into in
	}{
		{"one destination, a frame", []pkt{{1, 1200}, {1, 1200}, {1, 1200}, {1, 700}}, [][]int{{0, 1, 2, 3}}},
		{"interleaved destinations", []pkt{{1, 1200}, {2, 1200}, {1, 1200}, {2, 900}, {1, 300}},
			[][]int{{0, 2, 4}, {1, 3}}},
		{"a short segment ends a message", []pkt{{1, 1200}, {1, 500}, {1, 1200}}, [][]int{{0, 1}, {2}}},
		{"a longer packet starts the next", []pkt{{1, 500}, {1, 1200}, {1, 1200}}, [][]int{{0}, {1, 2}}},
		{"order kept behind a longer packet", []pkt{{1, 500}, {2, 100}, {1, 1200}, {1, 500}}, [][]int{{0}, {1}, {2, 3}}},
		{"single packets", []pkt{{1, 100}, {2, 100}, {3, 100}}, [][]int{{0}, {1}, {2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newUDPBatch()
			for i, p := range tt.in {
				b.ips[i] = [4]byte{127, 0, 0, 1}
				b.addrs[i].Port = 1000 + p.dst
				b.msgs[i].Buffers[0] = b.buf[i*batchSlot : i*batchSlot+p.size]
			}
			b.n = len(tt.in)
			out := b.coalesce()
			if len(out) != len(tt.want) {
				t.Fatalf("%d messages, want %d", len(out), len(tt.want))
			}
			for k, m := range out {
				if len(m.Buffers) != len(tt.want[k]) {
					t.Fatalf("message %d: %d segments, want %d", k, len(m.Buffers), len(tt.want[k]))
				}
				for s, idx := range tt.want[k] {
					if &m.Buffers[s][0] != &b.buf[idx*batchSlot] {
						t.Errorf("message %d segment %d is not packet %d", k, s, idx)
					}
				}
				if (len(m.OOB) > 0) != (len(m.Buffers) > 1) {
					t.Errorf("message %d: %d segments with %d bytes of control", k, len(m.Buffers), len(m.OOB))
				}
			}
		})
	}
	t.Run("bounds", func(t *testing.T) {
		b := newUDPBatch()
		for i := range batchSize {
			b.ips[i] = [4]byte{127, 0, 0, 1}
			b.addrs[i].Port = 1000
			b.msgs[i].Buffers[0] = b.buf[i*batchSlot : i*batchSlot+1200]
		}
		b.n = batchSize
		for k, m := range b.coalesce() {
			total := 0
			for _, p := range m.Buffers {
				total += len(p)
			}
			if len(m.Buffers) > gsoMaxSegments || total > gsoMaxBytes {
				t.Errorf("message %d: %d segments, %d bytes", k, len(m.Buffers), total)
			}
		}
	})
}

// Many destinations, packets of mixed sizes from many goroutines: each
// destination gets every packet whole and each writer's packets in order,
// and where the kernel segments, fewer messages than packets went out.
func TestBatchConnKeepsOrderPerDestination(t *testing.T) {
	src := loopbackUDP(t)
	bc := New(src)
	defer bc.Close()
	const dests, writers, each = 4, 4, 400
	var conns [dests]*net.UDPConn
	for i := range conns {
		conns[i] = loopbackUDP(t)
		_ = conns[i].SetReadBuffer(8 << 20)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			b := make([]byte, 1200)
			for i := range each {
				// Frames of three full packets and a short one.
				size := 1200
				if i%4 == 3 {
					size = 200 + i%700
				}
				binary.BigEndian.PutUint32(b, uint32(w))
				binary.BigEndian.PutUint32(b[4:], uint32(i))
				b[size-1] = byte(i)
				to := conns[(w+i/4)%dests].LocalAddr().(*net.UDPAddr).AddrPort()
				if _, err := bc.WriteToAddrPort(b[:size], to); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := 0
	for d, c := range conns {
		last := map[uint32]int{}
		buf := make([]byte, 2000)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			w, i := binary.BigEndian.Uint32(buf), int(binary.BigEndian.Uint32(buf[4:]))
			if prev, ok := last[w]; ok && i <= prev {
				t.Fatalf("destination %d: writer %d's packet %d after %d", d, w, i, prev)
			}
			if buf[n-1] != byte(i) {
				t.Fatalf("destination %d: writer %d's packet %d corrupt", d, w, i)
			}
			last[w] = i
			got++
			if got == writers*each {
				break
			}
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		}
	}
	if got != writers*each {
		t.Fatalf("%d of %d packets arrived", got, writers*each)
	}
	if bc.gso.Load() && bc.messages.Load() >= bc.packets.Load() {
		t.Errorf("GSO on, yet %d packets went in %d messages", bc.packets.Load(), bc.messages.Load())
	}
	t.Logf("gso %v: %d packets in %d messages, %d batches", bc.gso.Load(), bc.packets.Load(), bc.messages.Load(), bc.batches.Load())
}

// A forwarding worker's packets go when it leaves, with no flusher wake,
// and a worker that never leaves (a slow player) holds up no one else's:
// each worker that leaves sends everything pending.
func TestBatchConnWorkersSendOnLeave(t *testing.T) {
	src := loopbackUDP(t)
	bc := New(src)
	defer bc.Close()
	dst := loopbackUDP(t)
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	arrives := func(wait time.Duration) bool {
		_ = dst.SetReadDeadline(time.Now().Add(wait))
		_, _, err := dst.ReadFromUDPAddrPort(make([]byte, 2000))
		return err == nil
	}
	bc.Enter() // the slow worker: it leaves only at the end
	bc.Enter() // the worker that writes
	if _, err := bc.WriteToAddrPort(make([]byte, 100), to); err != nil {
		t.Fatal(err)
	}
	if arrives(100 * time.Millisecond) {
		t.Fatal("a worker's packet went before it left")
	}
	bc.Leave()
	if !arrives(5 * time.Second) {
		t.Fatal("a worker's packet did not go when it left")
	}
	// A write from outside the pool while a worker runs goes with the next
	// worker to leave.
	if _, err := bc.WriteToAddrPort(make([]byte, 100), to); err != nil {
		t.Fatal(err)
	}
	bc.Enter()
	bc.Leave()
	if !arrives(5 * time.Second) {
		t.Fatal("a packet queued while a worker ran did not go when one left")
	}
	bc.Leave() // the slow worker
	// No worker runs: a write wakes the flusher.
	if _, err := bc.WriteToAddrPort(make([]byte, 100), to); err != nil {
		t.Fatal(err)
	}
	if !arrives(5 * time.Second) {
		t.Fatal("with no worker running, the flusher did not send")
	}
}

// loopbackUDP is a UDP socket on 127.0.0.1, closed when the test ends.
func loopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Reads return each datagram whole with its sender's address (the ICE mux
// routes packets by it), time out at the read deadline, and fail once the
// socket is closed.
func TestBatchConnReads(t *testing.T) {
	bc := New(loopbackUDP(t))
	defer bc.Close()
	at := bc.LocalAddr().(*net.UDPAddr)
	senders := []*net.UDPConn{loopbackUDP(t), loopbackUDP(t), loopbackUDP(t)}
	for i, s := range senders {
		for j := range 3 {
			if _, err := s.WriteToUDP([]byte{byte(i), byte(j), 0xee}, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = bc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	for range 3 * len(senders) {
		n, from, err := bc.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 || buf[2] != 0xee || int(buf[0]) >= len(senders) {
			t.Fatalf("read %d bytes %x", n, buf[:n])
		}
		if want := senders[buf[0]].LocalAddr().(*net.UDPAddr).AddrPort(); from != want {
			t.Fatalf("packet of sender %d read as from %v, want %v", buf[0], from, want)
		}
	}
	_ = bc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := bc.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = bc.SetReadDeadline(time.Time{})
	go func() { time.Sleep(20 * time.Millisecond); _ = bc.Close() }()
	if _, _, err := bc.ReadFromAddrPort(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
	}
}
