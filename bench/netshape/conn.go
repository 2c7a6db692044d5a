package netshape

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ConnStats counts a Conn's datagrams.
type ConnStats struct {
	// Received is what the socket received, Dropped the part of it the
	// link's loss dropped, Sent what was sent.
	Received, Dropped, Sent int64
}

// Conn is a UDP socket on a link with delay and random loss: what it sends
// leaves RTT/2 late, what it receives is returned RTT/2 after it arrived,
// unless dropped with probability Loss. It implements pion's
// transport.UDPConn (and so net.PacketConn).
//
// Neither direction takes a goroutine per datagram. A received datagram
// waits in the socket's own buffer: a read takes the next one with the
// kernel's arrival time (SO_TIMESTAMPNS) and returns it when it is due, so
// later datagrams are not delayed by the wait for earlier ones. Sent
// datagrams are copied into a FIFO (the delay is the same for all, so it
// stays in due order) that one goroutine per Conn sends from; Close stops it.
type Conn struct {
	*net.UDPConn
	delay time.Duration
	loss  float64

	rmu   sync.Mutex // one reader at a time: the RNG, the timer, oob
	rng   *rand.Rand
	oob   []byte
	timer *time.Timer
	stamp bool // the kernel stamps arrivals

	smu   sync.Mutex
	queue []outgoing // due order
	wake  chan struct{}

	closed    chan struct{}
	closeOnce sync.Once
	done      chan struct{} // the sender returned

	received, dropped, sent atomic.Int64
}

// outgoing is a datagram waiting for its send time.
type outgoing struct {
	due  time.Time
	b    []byte
	to   netip.AddrPort
	conn bool // written to the connected peer (Write)
}

// NewConn puts c on link l's delay (l.RTT) and loss (l.Loss); the rate cap
// is the Shaper's. seed makes the loss repeatable. The Conn owns c.
func NewConn(c *net.UDPConn, l Link, seed uint64) *Conn {
	k := &Conn{
		UDPConn: c,
		delay:   l.RTT / 2,
		loss:    l.Loss,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		oob:     make([]byte, oobSize),
		wake:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	if k.delay > 0 {
		k.stamp = enableTimestamps(c)
		// Datagrams wait in the socket buffer for RTT/2: make room for them.
		_ = c.SetReadBuffer(4 << 20)
		k.timer = time.NewTimer(time.Hour)
		k.timer.Stop()
		go k.sender()
	} else {
		close(k.done)
	}
	return k
}

// Stats returns the Conn's counts so far.
func (c *Conn) Stats() ConnStats {
	return ConnStats{Received: c.received.Load(), Dropped: c.dropped.Load(), Sent: c.sent.Load()}
}

// Close closes the socket and stops the sender; datagrams not yet sent are
// dropped.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.UDPConn.Close()
		<-c.done
	})
	return err
}

// ReadFromAddrPort reads the next datagram that is not lost and returns it
// when it is due.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		var (
			n, oobn int
			from    netip.AddrPort
			err     error
		)
		if c.stamp {
			n, oobn, _, from, err = c.UDPConn.ReadMsgUDPAddrPort(b, c.oob)
		} else {
			n, from, err = c.UDPConn.ReadFromUDPAddrPort(b)
		}
		if err != nil {
			return n, from, err
		}
		arrived := time.Now()
		c.received.Add(1)
		if c.loss > 0 && c.rng.Float64() < c.loss {
			c.dropped.Add(1)
			continue
		}
		if c.delay <= 0 {
			return n, from, nil
		}
		if c.stamp {
			if t, ok := arrival(c.oob[:oobn]); ok {
				arrived = t
			}
		}
		if wait := time.Until(arrived.Add(c.delay)); wait > 0 {
			c.timer.Reset(wait)
			select {
			case <-c.timer.C:
			case <-c.closed:
				c.timer.Stop()
				return 0, netip.AddrPort{}, net.ErrClosed
			}
		}
		return n, from, nil
	}
}

// ReadFrom reads the next datagram (see ReadFromAddrPort).
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDP reads the next datagram (see ReadFromAddrPort).
func (c *Conn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Read reads the next datagram (see ReadFromAddrPort).
func (c *Conn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFromAddrPort(b)
	return n, err
}

// ReadMsgUDP reads the next datagram (see ReadFromAddrPort); it returns no
// control messages.
func (c *Conn) ReadMsgUDP(b, _ []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, addr, err = c.ReadFromUDP(b)
	return n, 0, 0, addr, err
}

// WriteToAddrPort sends b to to RTT/2 from now.
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return c.send(b, to, false)
}

// WriteTo sends b to addr RTT/2 from now.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: syscall.EINVAL}
	}
	return c.send(b, ua.AddrPort(), false)
}

// WriteToUDP sends b to addr RTT/2 from now.
func (c *Conn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	return c.send(b, addr.AddrPort(), false)
}

// Write sends b to the connected peer RTT/2 from now.
func (c *Conn) Write(b []byte) (int, error) { return c.send(b, netip.AddrPort{}, true) }

// WriteMsgUDP sends b RTT/2 from now, to addr or the connected peer; oob
// is not sent.
func (c *Conn) WriteMsgUDP(b, _ []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	if addr == nil {
		n, err = c.send(b, netip.AddrPort{}, true)
	} else {
		n, err = c.send(b, addr.AddrPort(), false)
	}
	return n, 0, err
}

func (c *Conn) send(b []byte, to netip.AddrPort, connected bool) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if c.delay <= 0 {
		c.sent.Add(1)
		if connected {
			return c.UDPConn.Write(b)
		}
		return c.UDPConn.WriteToUDPAddrPort(b, to)
	}
	c.smu.Lock()
	c.queue = append(c.queue, outgoing{due: time.Now().Add(c.delay), b: append([]byte(nil), b...), to: to, conn: connected})
	c.smu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(b), nil
}

// sender sends queued datagrams when due, until Close.
func (c *Conn) sender() {
	defer close(c.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var batch []outgoing
	for {
		c.smu.Lock()
		now := time.Now()
		i := 0
		for i < len(c.queue) && !c.queue[i].due.After(now) {
			i++
		}
		batch = append(batch[:0], c.queue[:i]...)
		c.queue = append(c.queue[:0], c.queue[i:]...)
		var next time.Duration = -1
		if len(c.queue) > 0 {
			next = c.queue[0].due.Sub(now)
		}
		c.smu.Unlock()
		for _, o := range batch {
			var err error
			if o.conn {
				_, err = c.UDPConn.Write(o.b)
			} else {
				_, err = c.UDPConn.WriteToUDPAddrPort(o.b, o.to)
			}
			if err == nil {
				c.sent.Add(1)
			} else if errors.Is(err, net.ErrClosed) {
				return
			}
		}
		clear(batch)
		var tc <-chan time.Time
		if next >= 0 {
			t.Reset(next)
			tc = t.C
		}
		select {
		case <-c.closed:
			return
		case <-c.wake:
			t.Stop()
		case <-tc:
		}
	}
}
