package bwe

// historySize is how many sent packets are remembered for feedback: 512
// packets are about 1.6 s of a 2.5 Mbit/s stream with its audio and 0.5 s
// at 10 Mbit/s, several times longer than feedback takes (50-100 ms), in
// 8 KiB per player: an edge holds thousands of players, so the history is
// most of what congestion control costs a player. A power of two so the
// slot is the sequence number's low bits.
const historySize = 512

// Flags of a sentPacket.
const (
	sentValid    = 1 << iota // the slot holds a packet
	sentProbe                // sent as probe padding/RTX
	sentReported             // feedback has reported it (received or lost)
	sentReceived             // feedback has reported it received
)

// sentPacket is one slot of the send history (16 bytes).
type sentPacket struct {
	sendTime int64
	size     int32
	seq      uint16
	cluster  uint8 // probe cluster id, 0 for none
	flags    uint8
}

// history is a ring of the last historySize packets sent, indexed by
// transport-wide sequence number. A slot is trusted only when its stored
// sequence number is the one asked for, which also makes wrap-around safe:
// a slot is overwritten 128 times before the same number comes back.
type history struct {
	ring [historySize]sentPacket
}

func (h *history) add(seq uint16, size int, now int64, probe bool, cluster uint8) {
	flags := uint8(sentValid)
	if probe {
		flags |= sentProbe
	}
	h.ring[seq&(historySize-1)] = sentPacket{sendTime: now, size: int32(size), seq: seq, cluster: cluster, flags: flags}
}

// get is the slot of seq, or nil when it has been overwritten or never sent.
func (h *history) get(seq uint16) *sentPacket {
	p := &h.ring[seq&(historySize-1)]
	if p.flags&sentValid == 0 || p.seq != seq {
		return nil
	}
	return p
}

// rateBuckets is the number of buckets of a rateWindow.
const rateBuckets = 12

// rateWindow measures a bitrate over a sliding window of rateBuckets buckets
// of width ns each, without allocating: bytes are added at a time, the rate
// is the bytes of the window over the time it covers.
type rateWindow struct {
	width   int64 // bucket width, ns
	buckets [rateBuckets]int64
	head    int64 // bucket number (time/width) of the newest bucket
	first   int64 // time of the first sample, to measure a young window
	started bool
}

// slot is the index of bucket number b, which may be negative on a
// player's clock that a hostile sequence of reference times drove below 0.
func slot(b int64) int64 { return (b%rateBuckets + rateBuckets) % rateBuckets }

// advance moves the window so that bucket b is the newest, clearing the
// buckets that fall out.
func (w *rateWindow) advance(b int64) {
	if b <= w.head {
		return
	}
	n := b - w.head
	if n > rateBuckets {
		n = rateBuckets
	}
	for i := int64(1); i <= n; i++ {
		w.buckets[slot(w.head+i)] = 0
	}
	w.head = b
}

func (w *rateWindow) add(t int64, bytes int) {
	b := t / w.width
	if !w.started {
		w.started, w.first, w.head = true, t, b
		w.buckets = [rateBuckets]int64{}
	}
	w.advance(b)
	if b <= w.head-rateBuckets {
		return // older than the window
	}
	w.buckets[slot(b)] += int64(bytes)
}

// rate is the bitrate of the window ending at t; 0 before any sample.
func (w *rateWindow) rate(t int64) float64 {
	if !w.started {
		return 0
	}
	w.advance(t / w.width)
	var sum int64
	for _, v := range w.buckets {
		sum += v
	}
	// The window covers the full old buckets plus the part of the newest
	// bucket that has elapsed, or less while young.
	span := (rateBuckets-1)*w.width + (t - w.head*w.width)
	if young := t - w.first; young < span {
		span = young
	}
	if span < w.width {
		span = w.width
	}
	return float64(sum) * 8e9 / float64(span)
}
