package bwe

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// A deterministic simulation of a sender, a bottleneck link and a player
// that answers with transport-cc feedback, in simulated time (1 ms ticks).

const (
	simStart    = int64(1_700_000_000) * 1e9 // unix ns of the simulation's start
	simPacket   = 1200                       // bytes per packet
	simQueue    = 200 * time.Millisecond     // the bottleneck's drop-tail queue
	simFbPeriod = 50 * time.Millisecond      // the player's feedback interval
	simRxClock  = int64(98_765_432_100)      // the player's clock is offset from ours
)

// phase sets the bottleneck capacity from a time on; 0 is unlimited.
type phase struct {
	at       time.Duration
	capacity int64
}

type simConfig struct {
	cfg      Config
	app      int64 // the source's rate: media is min(estimate, app)
	phases   []phase
	loss     float64       // random loss after the bottleneck
	prop     time.Duration // one-way propagation delay
	duration time.Duration
	startSeq uint16
	raw      bool // feedback as raw RTCP (FeedbackRTCP) instead of pion's struct
	seed     uint64
	desired  int64 // SetDesired, when not 0
}

// sample is the state at one point of a run.
type sample struct {
	at        time.Duration
	estimate  int64
	sent      int64 // bits/s sent over the last 100 ms
	stats     Stats
	congested bool // Congested
}

type arrival struct {
	seq uint16
	at  int64 // player's clock
}

type delivery struct {
	at int64
	fb *rtcp.TransportLayerCC
}

// simulate runs the scenario and returns the estimator and a sample every
// 100 ms.
func simulate(tb testing.TB, sc simConfig) (*Estimator, []sample) {
	tb.Helper()
	e := New(sc.cfg)
	if sc.desired > 0 {
		e.SetDesired(sc.desired)
	}
	rng := rand.New(rand.NewPCG(sc.seed, 42))
	var (
		seq                  = sc.startSeq
		mediaBudget, padding float64
		busyUntil            int64
		arrivals             []arrival
		inFlight             []arrival // sent, arriving later at the player (our clock)
		deliveries           []delivery
		nextFbSeq            uint16
		haveFbSeq            bool
		fbCount              uint8
		samples              []sample
		sentBits             int64
		phaseIdx             int
	)
	capacity := int64(0)
	send := func(now int64, probe bool) {
		e.Sent(seq, simPacket, now, probe)
		sentBits += simPacket * 8
		s := seq
		seq++
		if sc.loss > 0 && rng.Float64() < sc.loss {
			return
		}
		at := now
		if capacity > 0 {
			if busyUntil-now > int64(simQueue) {
				return // drop-tail
			}
			busyUntil = max(busyUntil, now) + simPacket*8*1e9/capacity
			at = busyUntil
		}
		inFlight = append(inFlight, arrival{seq: s, at: at + int64(sc.prop)})
	}
	ticks := int(sc.duration / time.Millisecond)
	for tick := 0; tick <= ticks; tick++ {
		rel := time.Duration(tick) * time.Millisecond
		now := simStart + int64(rel)
		for phaseIdx < len(sc.phases) && sc.phases[phaseIdx].at <= rel {
			capacity = sc.phases[phaseIdx].capacity
			phaseIdx++
		}
		// Feedback reaching the sender.
		for len(deliveries) > 0 && deliveries[0].at <= now {
			d := deliveries[0]
			deliveries = deliveries[1:]
			if sc.raw {
				b, err := d.fb.Marshal()
				if err != nil {
					tb.Fatal(err)
				}
				if !e.FeedbackRTCP(b, now) {
					tb.Fatalf("feedback %v rejected", d.fb)
				}
			} else if !e.Feedback(d.fb, now) {
				tb.Fatalf("feedback %v rejected", d.fb)
			}
		}
		// The sender: media paced at min(estimate, app), padding at ProbeRate.
		est := e.Estimate()
		mediaBudget = min(mediaBudget+float64(min(est, sc.app))/8e3, 3*simPacket)
		for mediaBudget >= simPacket {
			mediaBudget -= simPacket
			send(now, false)
		}
		if pr := e.ProbeRate(now); pr > 0 {
			padding = min(padding+float64(pr)/8e3, 3*simPacket)
			for padding >= simPacket {
				padding -= simPacket
				send(now, true)
			}
		} else {
			padding = 0
		}
		// Packets reaching the player.
		for len(inFlight) > 0 && inFlight[0].at <= now {
			a := inFlight[0]
			inFlight = inFlight[1:]
			arrivals = append(arrivals, arrival{seq: a.seq, at: a.at + simRxClock})
		}
		// The player's feedback.
		if rel%simFbPeriod == 0 && len(arrivals) > 0 {
			if !haveFbSeq {
				nextFbSeq, haveFbSeq = arrivals[0].seq, true
			}
			fb := buildFeedback(nextFbSeq, arrivals, fbCount)
			fbCount++
			nextFbSeq = arrivals[len(arrivals)-1].seq + 1
			arrivals = arrivals[:0]
			deliveries = append(deliveries, delivery{at: now + int64(sc.prop), fb: fb})
		}
		if rel%(100*time.Millisecond) == 0 {
			samples = append(samples, sample{at: rel, estimate: e.Estimate(), sent: sentBits * 10, stats: e.Stats(), congested: e.Congested()})
			sentBits = 0
		}
	}
	return e, samples
}

// buildFeedback is the transport-cc feedback for the packets from base to
// the last of arrivals (in sequence order), those not in arrivals lost.
func buildFeedback(base uint16, arrivals []arrival, count uint8) *rtcp.TransportLayerCC {
	n := int(arrivals[len(arrivals)-1].seq-base) + 1
	syms := make([]uint16, n)
	at := make([]int64, n)
	for _, a := range arrivals {
		i := int(a.seq - base)
		if i < 0 || i >= n {
			continue
		}
		syms[i] = symSmallDelta
		at[i] = a.at
	}
	ref := arrivals[0].at / 64e6
	prev := ref * 64e6
	fb := &rtcp.TransportLayerCC{
		SenderSSRC:         1,
		MediaSSRC:          2,
		BaseSequenceNumber: base,
		PacketStatusCount:  uint16(n),
		ReferenceTime:      uint32(ref) & 0xffffff,
		FbPktCount:         count,
	}
	for i, s := range syms {
		if s == symNotReceived {
			continue
		}
		ticks := (at[i] - prev) / deltaUnit
		prev += ticks * deltaUnit
		typ := uint16(symSmallDelta)
		if ticks < 0 || ticks > 255 {
			typ = symLargeDelta
		}
		syms[i] = typ
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: typ, Delta: ticks * deltaUnit / 1000})
	}
	fb.PacketChunks = encodeChunks(syms)
	size := fb.MarshalSize()
	fb.Header = rtcp.Header{
		Padding: size != fb.MarshalSize() || (size%4 != 0),
		Count:   rtcp.FormatTCC,
		Type:    rtcp.TypeTransportSpecificFeedback,
		Length:  uint16(size/4 - 1),
	}
	return fb
}

// encodeChunks uses all three kinds of chunk: runs of 7 or more equal
// symbols, one-bit vectors where 14 symbols need no large delta, two-bit
// vectors otherwise (the last one padded with symbols beyond the count).
func encodeChunks(syms []uint16) []rtcp.PacketStatusChunk {
	var chunks []rtcp.PacketStatusChunk
	for i := 0; i < len(syms); {
		run := 1
		for i+run < len(syms) && syms[i+run] == syms[i] && run < 8191 {
			run++
		}
		if run >= 7 {
			chunks = append(chunks, &rtcp.RunLengthChunk{Type: rtcp.TypeTCCRunLengthChunk, PacketStatusSymbol: syms[i], RunLength: uint16(run)})
			i += run
			continue
		}
		oneBit := i+14 <= len(syms)
		for j := i; oneBit && j < i+14; j++ {
			oneBit = syms[j] <= symSmallDelta
		}
		width := 7
		size := uint16(rtcp.TypeTCCSymbolSizeTwoBit)
		if oneBit {
			width, size = 14, rtcp.TypeTCCSymbolSizeOneBit
		}
		list := make([]uint16, width)
		copy(list, syms[i:min(i+width, len(syms))])
		chunks = append(chunks, &rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk, SymbolSize: size, SymbolList: list})
		i += width
	}
	return chunks
}
