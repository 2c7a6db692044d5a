package sfu

import (
	"sync"
	"sync/atomic"
)

// packetCache is the one store of a publisher track's recent packets,
// shared by every player of the track: players' live packets, NACK
// retransmissions and keyframe replays are all read from it, so a player
// holds no packets of its own.
//
// It is a ring indexed by extended sequence number, bounded by count (the
// ring's size) and age (a NACK for a packet older than maxAge is not
// answered: the player has given up on it). The latest keyframe group is
// pinned (see keyframeStart): the ring grows, up to maxSlots, rather than
// overwrite it; a group larger than that is dropped, and a joining player
// then waits for the next keyframe.
//
// Buffers are allocated when a slot is first used and reused afterwards:
// in steady state an insert allocates nothing.
type packetCache struct {
	mu       sync.RWMutex
	slots    []cacheSlot
	maxSlots int
	maxAge   int64 // nanoseconds

	highest uint64 // highest extended sequence number inserted, 0: none
	key     uint64 // first packet of the latest keyframe group, 0: none
	// head is highest+1, readable without the lock: players compare their
	// cursor against it.
	head atomic.Uint64
}

type cacheSlot struct {
	ext    uint64 // 0: empty
	at     int64  // arrival, unix nanoseconds
	ts     uint32
	pt     uint8
	marker bool
	buf    []byte // the payload
}

// cachedPacket is a packet's metadata as read from the cache.
type cachedPacket struct {
	ext    uint64
	at     int64
	ts     uint32
	pt     uint8
	marker bool
	n      int // payload bytes copied
}

const MaxPayload = 1500

func newPacketCache(slots, maxSlots int, maxAgeNanos int64) *packetCache {
	return &packetCache{slots: make([]cacheSlot, pow2(slots)), maxSlots: pow2(maxSlots), maxAge: maxAgeNanos}
}

func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// insert stores a packet. A packet older than the ring's reach is dropped.
func (c *packetCache) insert(ext uint64, at int64, ts uint32, pt uint8, marker bool, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.highest != 0 && ext+uint64(len(c.slots)) <= c.highest {
		return // too old
	}
	if ext > c.highest {
		if c.key != 0 && ext-c.key >= uint64(len(c.slots)) {
			// The keyframe group would be overwritten: grow, or let it go.
			for ext-c.key >= uint64(len(c.slots)) && len(c.slots) < c.maxSlots {
				c.grow()
			}
			if ext-c.key >= uint64(len(c.slots)) {
				c.key = 0
			}
		}
	}
	s := &c.slots[ext&uint64(len(c.slots)-1)]
	s.ext, s.at, s.ts, s.pt, s.marker = ext, at, ts, pt, marker
	if cap(s.buf) < len(payload) {
		s.buf = make([]byte, 0, max(len(payload), MaxPayload))
	}
	s.buf = append(s.buf[:0], payload...)
	if ext > c.highest {
		c.highest = ext
		c.head.Store(ext + 1)
	}
}

// grow doubles the ring, keeping every packet.
func (c *packetCache) grow() {
	old := c.slots
	c.slots = make([]cacheSlot, 2*len(old))
	mask := uint64(len(c.slots) - 1)
	for i := range old {
		if old[i].ext != 0 {
			c.slots[old[i].ext&mask] = old[i]
		}
	}
}

// get copies packet ext's payload into dst. With checkAge, a packet older
// than maxAge (relative to now) is not returned.
func (c *packetCache) get(ext uint64, dst []byte, now int64, checkAge bool) (cachedPacket, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := &c.slots[ext&uint64(len(c.slots)-1)]
	if s.ext != ext || ext == 0 || (checkAge && now-s.at > c.maxAge) {
		return cachedPacket{}, false
	}
	n := copy(dst, s.buf)
	return cachedPacket{ext: ext, at: s.at, ts: s.ts, pt: s.pt, marker: s.marker, n: n}, true
}

// tsOf is the timestamp of packet ext, if cached.
func (c *packetCache) tsOf(ext uint64) (uint32, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := &c.slots[ext&uint64(len(c.slots)-1)]
	return s.ts, s.ext == ext && ext != 0
}

// oldest is the lowest extended sequence number the ring can still hold.
func (c *packetCache) oldest() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.highest < uint64(len(c.slots)) {
		return 1
	}
	return c.highest - uint64(len(c.slots)) + 1
}

// size is the number of slots (for tests and metrics).
func (c *packetCache) size() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.slots)
}
