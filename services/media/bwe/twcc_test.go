package bwe

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

const ms = int64(time.Millisecond)

// sendRun records n packets from seq on, 1 ms apart from t.
func sendRun(e *Estimator, seq uint16, n int, t int64) {
	for i := range n {
		e.Sent(seq+uint16(i), 1200, t+int64(i)*ms, false)
	}
}

// feedbackFor is transport-cc feedback for n packets from base, arriving
// 1 ms apart from first (the player's clock), those in lost not received.
func feedbackFor(base uint16, n int, first int64, lost ...uint16) *rtcp.TransportLayerCC {
	var arr []arrival
	for i := range n {
		s := base + uint16(i)
		isLost := false
		for _, l := range lost {
			isLost = isLost || l == s
		}
		if !isLost {
			arr = append(arr, arrival{seq: s, at: first + int64(i)*ms})
		}
	}
	return buildFeedback(base, arr, 0)
}

func marshal(t testing.TB, p rtcp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWrappedSequenceNumbers: feedback whose packets run from 65530 over
// the wrap to 9 is applied whole, as raw RTCP and as pion's struct.
func TestWrappedSequenceNumbers(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "struct", true: "raw"}[raw], func(t *testing.T) {
			e := New(Config{})
			sendRun(e, 65530, 16, simStart)
			fb := feedbackFor(65530, 16, simRxClock, 65534, 3)
			ok := false
			if raw {
				ok = e.FeedbackRTCP(marshal(t, fb), simStart+100*ms)
			} else {
				ok = e.Feedback(fb, simStart+100*ms)
			}
			if !ok {
				t.Fatal("feedback rejected")
			}
			// The same feedback again (a duplicate) changes nothing.
			e.Feedback(fb, simStart+110*ms)
			s := e.Stats()
			if s.Reported != 16 || s.Lost != 2 {
				t.Errorf("reported %d lost %d, want 16 and 2", s.Reported, s.Lost)
			}
			if s.Acked <= 0 {
				t.Errorf("acked rate %d, want > 0", s.Acked)
			}
		})
	}
}

// TestREMBOnly: a player that sends only REMB and receiver reports.
func TestREMBOnly(t *testing.T) {
	e := New(Config{Initial: 300_000, Min: 30_000, Max: 10_000_000})
	steps := []struct {
		name string
		do   func(now int64)
		want int64
	}{
		{"before anything: Initial", func(int64) {}, 300_000},
		{"REMB 1M", func(now int64) { e.REMB(1_000_000, now) }, 1_000_000},
		{"no loss: no cap", func(now int64) { e.ReceiverReport(0, now) }, 1_000_000},
		{"25 % loss cuts by 12.5 %", func(now int64) { e.ReceiverReport(64, now) }, 875_000},
		{"REMB 2M stays under the loss cap", func(now int64) { e.REMB(2_000_000, now) }, 875_000},
		{"5 % loss holds", func(now int64) { e.ReceiverReport(13, now) }, 875_000},
		{"no loss a second later: +8 % + 1 kbit/s", func(now int64) { e.ReceiverReport(0, now) }, 946_000},
		{"REMB below the cap", func(now int64) { e.REMB(500_000, now) }, 500_000},
		{"REMB 0 is ignored", func(now int64) { e.REMB(0, now) }, 500_000},
		{"REMB below Min is clamped", func(now int64) { e.REMB(1_000, now) }, 30_000},
	}
	now := simStart
	for _, s := range steps {
		now += int64(time.Second)
		s.do(now)
		if got := e.Estimate(); got != s.want {
			t.Errorf("%s: estimate %d, want %d", s.name, got, s.want)
		}
	}
	// REMB in raw RTCP, as the edge reads it.
	remb := &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1_500_000, SSRCs: []uint32{2}}
	if !e.FeedbackRTCP(marshal(t, remb), now+int64(time.Second)) {
		t.Fatal("REMB rejected")
	}
	if got := e.Stats().REMB; got < 1_490_000 || got > 1_500_000 {
		t.Errorf("REMB from raw RTCP %d, want 1.5M (to the mantissa's precision)", got)
	}
}

// TestReceiverReportIgnoredWithTransportCC: transport-cc measures loss
// itself, so receiver reports do not cut the estimate while it comes.
func TestReceiverReportIgnoredWithTransportCC(t *testing.T) {
	e := New(Config{Initial: 1_000_000})
	sendRun(e, 0, 20, simStart)
	if !e.Feedback(feedbackFor(0, 20, simRxClock), simStart+50*ms) {
		t.Fatal("feedback rejected")
	}
	before := e.Estimate()
	e.ReceiverReport(128, simStart+60*ms)
	if got := e.Estimate(); got != before {
		t.Errorf("estimate %d after a 50 %% loss RR with transport-cc, want %d", got, before)
	}
}

// TestGarbageFeedback: malformed feedback is rejected whole, changes
// nothing and does not panic.
func TestGarbageFeedback(t *testing.T) {
	valid := marshal(t, feedbackFor(100, 40, simRxClock, 110, 111))
	with := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	restamp := func(b []byte) []byte { // header length and no padding for a cut packet
		b[0] &^= 0x20
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
		return b
	}
	raw := []struct {
		name string
		b    []byte
		ok   bool // whether FeedbackRTCP reports it well-formed (and ignorable)
	}{
		{"empty", nil, true},
		{"three bytes", []byte{0x8f, 205, 0}, false},
		{"version 1", with(func(b []byte) []byte { b[0] = b[0]&0x3f | 0x40; return b }), false},
		{"length beyond the buffer", with(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], 200); return b }), false},
		{"more statuses than chunks", with(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14:], 4000); return b }), false},
		{"deltas cut", with(func(b []byte) []byte { return restamp(b[:len(b)-8]) }), false},
		{"chunks only", with(func(b []byte) []byte { return restamp(b[:24]) }), false},
		{"reserved symbol", with(func(b []byte) []byte { binary.BigEndian.PutUint16(b[20:], 0xffff); return b }), false},
		{"padding of zero", with(func(b []byte) []byte { b[0] |= 0x20; b[len(b)-1] = 0; return b }), false},
		{"padding longer than the packet", with(func(b []byte) []byte { b[0] |= 0x20; b[len(b)-1] = 255; return b }), false},
		{"REMB with a huge exponent", []byte{0x8f, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 'R', 'E', 'M', 'B', 1, 0xff, 0xff, 0xff}, false},
		{"other application feedback", []byte{0x8f, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 'X', 'Y', 'Z', 'W', 1, 0xff, 0xff, 0xff}, true},
		{"a receiver report only", marshal(t, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, FractionLost: 200}}}), true},
	}
	for k := 1; k < len(valid); k++ {
		raw = append(raw, struct {
			name string
			b    []byte
			ok   bool
		}{"prefix", valid[:k], false})
	}
	for _, tt := range raw {
		e := New(Config{Initial: 1_000_000})
		sendRun(e, 100, 40, simStart)
		before := e.Stats()
		if ok := e.FeedbackRTCP(tt.b, simStart+100*ms); ok != tt.ok {
			t.Errorf("%s (%d bytes): FeedbackRTCP %v, want %v", tt.name, len(tt.b), ok, tt.ok)
		}
		if after := e.Stats(); after != before {
			t.Errorf("%s (%d bytes): stats changed from %+v to %+v", tt.name, len(tt.b), before, after)
		}
	}

	good := func() *rtcp.TransportLayerCC { return feedbackFor(100, 40, simRxClock, 110) }
	structs := []struct {
		name string
		fb   *rtcp.TransportLayerCC
	}{
		{"nil", nil},
		{"statuses without chunks", &rtcp.TransportLayerCC{BaseSequenceNumber: 100, PacketStatusCount: 10}},
		{"received without deltas", func() *rtcp.TransportLayerCC { f := good(); f.RecvDeltas = f.RecvDeltas[:5]; return f }()},
		{"nil delta", func() *rtcp.TransportLayerCC { f := good(); f.RecvDeltas[3] = nil; return f }()},
		{"nil chunk", func() *rtcp.TransportLayerCC {
			f := good()
			f.PacketChunks[0] = (*rtcp.RunLengthChunk)(nil)
			return f
		}()},
		{"untyped nil chunk", func() *rtcp.TransportLayerCC { f := good(); f.PacketChunks[0] = nil; return f }()},
		{"reserved symbol", &rtcp.TransportLayerCC{BaseSequenceNumber: 100, PacketStatusCount: 1, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: []uint16{3}}}}},
		{"two in a one-bit vector", &rtcp.TransportLayerCC{BaseSequenceNumber: 100, PacketStatusCount: 1, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: []uint16{2}}},
			RecvDeltas: []*rtcp.RecvDelta{{Type: 2}}}},
	}
	for _, tt := range structs {
		e := New(Config{Initial: 1_000_000})
		sendRun(e, 100, 40, simStart)
		before := e.Stats()
		if e.Feedback(tt.fb, simStart+100*ms) {
			t.Errorf("%s: Feedback accepted it", tt.name)
		}
		if after := e.Stats(); after != before {
			t.Errorf("%s: stats changed from %+v to %+v", tt.name, before, after)
		}
	}
}

// TestReferenceTimeBelowZero: reference times that keep stepping back by
// half the 24-bit range unwrap to a negative clock; nothing breaks.
func TestReferenceTimeBelowZero(t *testing.T) {
	e := New(Config{})
	for i := range 8 {
		base := uint16(i * 10)
		sendRun(e, base, 10, simStart+int64(i)*100*ms)
		fb := feedbackFor(base, 10, 0)
		fb.ReferenceTime = uint32(i*(1<<23+1)) & 0xffffff // a step back of 2^23 - 1 each time
		if !e.FeedbackRTCP(marshal(t, fb), simStart+int64(i)*100*ms+50*ms) {
			t.Fatal("feedback rejected")
		}
	}
	if s := e.Stats(); s.Reported != 80 || s.Estimate <= 0 {
		t.Errorf("stats %+v, want 80 packets reported and an estimate", s)
	}
}

// TestConcurrentUse runs the forwarding side and the RTCP side at once (for
// the race detector).
func TestConcurrentUse(t *testing.T) {
	e := New(Config{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 5000 {
			now := simStart + int64(i)*ms
			e.Sent(uint16(i), 1200, now, e.ProbeRate(now) > 0)
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 200 {
			now := simStart + int64(i)*25*ms
			e.Feedback(feedbackFor(uint16(i*25), 25, simRxClock+int64(i)*25*ms), now)
			e.REMB(5_000_000, now)
			e.ReceiverReport(0, now)
			_ = e.Estimate()
			_ = e.Stats()
		}
	}()
	wg.Wait()
	if est := e.Estimate(); est < DefaultMin || est > DefaultMax {
		t.Errorf("estimate %d out of bounds", est)
	}
}

// FuzzFeedback: no input panics FeedbackRTCP or takes the estimate out of
// its bounds.
func FuzzFeedback(f *testing.F) {
	f.Add(marshal(f, feedbackFor(0, 40, simRxClock, 3, 4, 5)))
	f.Add(marshal(f, feedbackFor(65530, 20, simRxClock)))
	f.Add(marshal(f, &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1_500_000, SSRCs: []uint32{2}}))
	f.Add([]byte{0x8f, 205, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Config{Min: 50_000, Max: 5_000_000}
		e := New(c)
		sendRun(e, 0, 64, simStart)
		sendRun(e, 65500, 36, simStart+64*ms)
		e.FeedbackRTCP(b, simStart+200*ms)
		if est := e.Estimate(); est < c.Min || est > c.Max {
			t.Fatalf("estimate %d out of [%d, %d]", est, c.Min, c.Max)
		}
	})
}
