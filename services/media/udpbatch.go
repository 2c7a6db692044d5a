package media

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// batchConn is the edge's one UDP socket with its writes batched: a write
// copies the packet into the pending batch and returns; a flusher sends
// the batch with one sendmmsg (ipv4.PacketConn.WriteBatch; one write per
// packet where the OS has no sendmmsg). While a batch is on its way the
// next one fills, so the more the edge sends the bigger its batches, and a
// lone packet waits only for the flusher's goroutine to run: no timer, no
// added delay when the edge is idle.
//
// pion's ICE UDP mux reads and writes it through ReadFromAddrPort and
// WriteToAddrPort (netip addresses, nothing allocated).
type batchConn struct {
	*net.UDPConn
	pc *ipv4.PacketConn

	mu      sync.Mutex
	pending *udpBatch
	closed  bool

	sendMu sync.Mutex // one batch on its way at a time
	spare  *udpBatch  // owned by whoever holds sendMu
	wake   chan struct{}
	done   chan struct{}

	// Counters (tests and metrics): batches sent, packets sent, packets
	// the kernel refused.
	batches, packets, errs atomic.Int64
}

// udpBatch is a batch's messages, each over its own slot of one buffer.
type udpBatch struct {
	msgs  []ipv4.Message
	addrs []net.UDPAddr
	ips   [][4]byte
	buf   []byte
	n     int
}

const (
	batchSize = 64
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
	return b
}

func newBatchConn(c *net.UDPConn) *batchConn {
	bc := &batchConn{UDPConn: c, pc: ipv4.NewPacketConn(c), pending: newUDPBatch(), spare: newUDPBatch(),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go bc.flusher()
	return bc
}

var errBatchClosed = errors.New("media: the UDP socket is closed")

// ReadFromAddrPort reads one packet (ice.AddrPortReaderWriter).
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.ReadFromUDPAddrPort(b)
}

// WriteToAddrPort queues b for addr (ice.AddrPortReaderWriter).
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
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
			if i == 0 {
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
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// ReadFrom reads one packet (net.PacketConn).
func (c *batchConn) ReadFrom(b []byte) (int, net.Addr, error) { return c.UDPConn.ReadFrom(b) }

func (c *batchConn) flusher() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.flush()
	}
}

// flush sends the pending batch.
func (c *batchConn) flush() {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	b := c.pending
	c.pending, c.spare = c.spare, b
	c.mu.Unlock()
	msgs := b.msgs[:b.n]
	for len(msgs) > 0 {
		n, err := c.pc.WriteBatch(msgs, 0)
		if n > 0 {
			c.packets.Add(int64(n))
			msgs = msgs[n:]
		}
		if err != nil {
			// The first unsent packet is refused (its destination gone):
			// drop it, send the rest.
			c.errs.Add(1)
			if n <= 0 {
				msgs = msgs[1:]
			}
			if errors.Is(err, net.ErrClosed) {
				break
			}
		}
	}
	c.batches.Add(1)
	b.n = 0
}

// Close stops the flusher (what is queued is sent) and closes the socket.
func (c *batchConn) Close() error {
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
