// Package udpbatch is the media edge's one UDP socket with batched writes
// (sendmmsg), UDP GSO where the kernel segments, and raw system calls on
// Linux that do not wake the Go scheduler's monitor (rawsocket.go). pion's
// ICE UDP mux reads and writes it; the SFU's forwarding workers flush it
// (Enter, Leave). A change to how the edge's packets reach the kernel goes
// here; beside it, internal/rawconn does the same for TCP and
// internal/udpgro receives with GRO (benchmark players).
package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// Conn is the edge's one UDP socket with its writes batched: a write
// copies the packet into the pending batch and returns; a flusher sends
// the batch with one sendmmsg (ipv4.PacketConn.WriteBatch; one write per
// packet where the OS has no sendmmsg). While a batch is on its way the
// next one fills, so the more the edge sends the bigger its batches, and a
// lone packet waits only for the flusher's goroutine to run: no timer, no
// added delay when the edge is idle.
//
// The forwarding pool's workers send for themselves (Enter, Leave): a
// worker that runs out of players sends the batch, so a publisher's packet
// to every player goes out in the batches of the workers that forwarded it,
// without a wake of the flusher per batch.
//
// Where the kernel has UDP GSO (Linux), the packets of a batch that go to
// one player, in order, become one message segmented by the kernel: a
// player's frame costs one trip through the stack instead of one per
// packet (udpgso_linux.go).
//
// pion's ICE UDP mux reads and writes it through ReadFromAddrPort and
// WriteToAddrPort (netip addresses, nothing allocated).
type Conn struct {
	*net.UDPConn
	pc *ipv4.PacketConn

	mu      sync.Mutex
	pending *udpBatch
	closed  bool

	sendMu sync.Mutex // one batch on its way at a time
	spare  *udpBatch  // owned by whoever holds sendMu
	wake   chan struct{}
	done   chan struct{}
	gso    atomic.Bool // the kernel segments: coalesce per destination
	raw    *rawSocket  // nil: batches go through pc, reads through the UDPConn

	// active counts writers that flush themselves when they stop
	// (forwarding workers, see Enter): while one runs, a write needs no
	// flusher wake.
	active atomic.Int32

	// Counters (tests and metrics): batches sent, packets sent, messages
	// they went in, packets the kernel refused.
	batches, packets, messages, errs atomic.Int64
}

// udpBatch is a batch's messages, each over its own slot of one buffer,
// and the coalesced messages (out) GSO sends them in.
type udpBatch struct {
	msgs  []ipv4.Message
	addrs []net.UDPAddr
	ips   [][4]byte
	buf   []byte
	n     int

	out   []ipv4.Message
	oob   []byte
	taken []bool
}

const (
	batchSize = 128
	// gsoMaxSegments and gsoMaxBytes bound one coalesced message (the
	// kernel's limits are 64 or 128 segments and one IP datagram).
	gsoMaxSegments = 64
	gsoMaxBytes    = 60000
	// batchSlot fits any packet the edge sends (SRTP under pion's 1200
	// byte MTU, DTLS records, STUN); a bigger one is written at once.
	batchSlot = 1500
)

func newUDPBatch() *udpBatch {
	b := &udpBatch{msgs: make([]ipv4.Message, batchSize), addrs: make([]net.UDPAddr, batchSize),
		ips: make([][4]byte, batchSize), buf: make([]byte, batchSize*batchSlot)}
	for i := range b.msgs {
		b.addrs[i].IP = b.ips[i][:]
		b.msgs[i].Buffers = [][]byte{nil}
		b.msgs[i].Addr = &b.addrs[i]
	}
	b.out = make([]ipv4.Message, batchSize)
	b.oob = make([]byte, batchSize*gsoOOBSize)
	b.taken = make([]bool, batchSize)
	for i := range b.out {
		b.out[i].Buffers = make([][]byte, 0, gsoMaxSegments)
	}
	return b
}

// New wraps c and starts its flusher; Close stops it.
func New(c *net.UDPConn) *Conn {
	bc := &Conn{UDPConn: c, pc: ipv4.NewPacketConn(c), pending: newUDPBatch(), spare: newUDPBatch(),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	bc.gso.Store(gsoSupported(c))
	bc.raw = newRawSocket(c)
	go bc.flusher()
	return bc
}

var errBatchClosed = errors.New("udpbatch: the UDP socket is closed")

// ReadFromAddrPort reads one packet (ice.AddrPortReaderWriter).
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.raw != nil {
		return c.raw.recv(b)
	}
	return c.ReadFromUDPAddrPort(b)
}

// WriteToAddrPort queues b for addr (ice.AddrPortReaderWriter).
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	a := addr.Addr().Unmap()
	if !a.Is4() || len(b) > batchSlot {
		return c.WriteToUDPAddrPort(b, addr)
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, errBatchClosed
		}
		p := c.pending
		if p.n < batchSize {
			i := p.n
			p.n++
			slot := p.buf[i*batchSlot : i*batchSlot+len(b)]
			copy(slot, b)
			p.ips[i] = a.As4()
			p.addrs[i].Port = int(addr.Port())
			p.msgs[i].Buffers[0] = slot
			c.mu.Unlock()
			if i == 0 && c.active.Load() == 0 {
				select {
				case c.wake <- struct{}{}:
				default:
				}
			}
			return len(b), nil
		}
		c.mu.Unlock()
		// Full: send it from here, then queue again.
		c.flush()
	}
}

// WriteTo queues b for addr (net.PacketConn).
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// ReadFrom reads one packet (net.PacketConn).
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

func (c *Conn) flusher() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		// The writer that woke us made us its runnext: we would run
		// before the players it woke and send its one packet alone. Let
		// every runnable writer queue first, and send them together.
		runtime.Gosched()
		c.flush()
	}
}

// Enter marks the caller as a writer that will call Leave when it stops
// writing; nil c (tests without a socket) does nothing.
func (c *Conn) Enter() {
	if c != nil {
		c.active.Add(1)
	}
}

// Leave sends what is pending: the caller's packets and any queued while
// it wrote (they woke no flusher). Every writer that entered leaves, so a
// slow one holds up only its own packets.
func (c *Conn) Leave() {
	if c == nil {
		return
	}
	c.active.Add(-1)
	c.mu.Lock()
	n := c.pending.n
	c.mu.Unlock()
	if n > 0 {
		c.flush()
	}
}

// flush sends the pending batch.
func (c *Conn) flush() {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	b := c.pending
	c.pending, c.spare = c.spare, b
	c.mu.Unlock()
	msgs := b.msgs[:b.n]
	if c.gso.Load() && len(msgs) > 1 {
		msgs = b.coalesce()
	}
	for len(msgs) > 0 {
		n, err := c.writeBatch(msgs)
		if n > 0 {
			sent := 0
			for _, m := range msgs[:n] {
				sent += len(m.Buffers)
			}
			c.packets.Add(int64(sent))
			c.messages.Add(int64(n))
			msgs = msgs[n:]
		}
		if err == nil {
			continue
		}
		if len(msgs) > 0 && len(msgs[0].OOB) > 0 && isGSOError(err) {
			// This path cannot segment after all: send the rest one
			// packet per message, from now on.
			c.gso.Store(false)
			msgs = b.uncoalesce(msgs)
			defer b.resetAddrs()
			continue
		}
		// The first unsent message is refused (its destination gone):
		// drop it, send the rest.
		c.errs.Add(1)
		if n <= 0 {
			msgs = msgs[1:]
		}
		if errors.Is(err, net.ErrClosed) {
			break
		}
	}
	c.batches.Add(1)
	b.n = 0
}

// writeBatch sends msgs with one sendmmsg where it can, the raw way on
// Linux (rawSocket), and reports how many went.
func (c *Conn) writeBatch(msgs []ipv4.Message) (int, error) {
	if c.raw != nil {
		if n, ok, err := c.raw.send(msgs); ok {
			if err != nil {
				err = &net.OpError{Op: "sendmmsg", Net: "udp", Err: os.NewSyscallError("sendmmsg", err)}
			}
			return n, err
		}
	}
	return c.pc.WriteBatch(msgs, 0)
}

// coalesce groups the batch's packets into GSO messages: each holds
// packets to one destination, in the order they were queued, all of one
// size but the last, which may be shorter (the kernel's rule). Packets to
// different destinations may change order; packets to one never do.
func (b *udpBatch) coalesce() []ipv4.Message {
	n := b.n
	clear(b.taken[:n])
	out := 0
	for i := range n {
		if b.taken[i] {
			continue
		}
		b.taken[i] = true
		first := b.msgs[i].Buffers[0]
		size, total := len(first), len(first)
		m := &b.out[out]
		m.Buffers = append(m.Buffers[:0], first)
		m.Addr = b.msgs[i].Addr
		m.OOB = nil
		for j := i + 1; j < n && len(m.Buffers) < gsoMaxSegments; j++ {
			if b.taken[j] || b.ips[j] != b.ips[i] || b.addrs[j].Port != b.addrs[i].Port {
				continue
			}
			p := b.msgs[j].Buffers[0]
			if len(p) > size || total+len(p) > gsoMaxBytes {
				break // it starts the destination's next message
			}
			b.taken[j] = true
			m.Buffers = append(m.Buffers, p)
			total += len(p)
			if len(p) < size {
				break // a short segment ends a message
			}
		}
		if len(m.Buffers) > 1 {
			m.OOB = b.oob[out*gsoOOBSize : (out+1)*gsoOOBSize]
			putGSO(m.OOB, size)
		}
		out++
	}
	return b.out[:out]
}

// resetAddrs points each message back at its own address slot, which
// uncoalesce changed.
func (b *udpBatch) resetAddrs() {
	for i := range b.msgs {
		b.msgs[i].Addr = &b.addrs[i]
	}
}

// uncoalesce turns unsent GSO messages back into one message per packet,
// reusing the batch's own messages (whose order no longer matters).
func (b *udpBatch) uncoalesce(unsent []ipv4.Message) []ipv4.Message {
	k := 0
	for _, m := range unsent {
		for _, p := range m.Buffers {
			b.msgs[k].Buffers[0] = p
			b.msgs[k].Addr = m.Addr
			k++
		}
	}
	return b.msgs[:k]
}

// Close stops the flusher (what is queued is sent) and closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.done)
	c.flush()
	return c.UDPConn.Close()
}

// Packets is how many packets the socket sent.
func (c *Conn) Packets() int64 { return c.packets.Load() }

// Messages is how many messages the sent packets went in (fewer than
// Packets where the kernel segments: GSO).
func (c *Conn) Messages() int64 { return c.messages.Load() }

// Batches is how many system calls (sendmmsg) sent the messages.
func (c *Conn) Batches() int64 { return c.batches.Load() }
