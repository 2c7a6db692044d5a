package bwe

import (
	"encoding/binary"
	"testing"
)

// BenchmarkSent is the forwarding path's cost per packet (0 allocs/op).
func BenchmarkSent(b *testing.B) {
	e := New(Config{})
	b.ReportAllocs()
	for i := range b.N {
		e.Sent(uint16(i), 1200, simStart+int64(i)*100_000, false)
	}
}

// BenchmarkFeedbackRTCP is the RTCP path's cost per raw feedback of 20
// packets (with the 20 Sent calls), allocations included.
func BenchmarkFeedbackRTCP(b *testing.B) {
	e := New(Config{})
	fb := marshal(b, feedbackFor(0, 20, simRxClock, 7))
	b.ReportAllocs()
	for i := range b.N {
		base := uint16(i * 20)
		t := simStart + int64(i)*64*ms
		sendRun(e, base, 20, t)
		binary.BigEndian.PutUint16(fb[12:], base)
		ref := uint32(i) & 0xffffff
		fb[16], fb[17], fb[18] = byte(ref>>16), byte(ref>>8), byte(ref)
		e.FeedbackRTCP(fb, t+80*ms)
	}
}

// BenchmarkFeedback is the same with pion's parsed feedback.
func BenchmarkFeedback(b *testing.B) {
	e := New(Config{})
	fb := feedbackFor(0, 20, simRxClock, 7)
	b.ReportAllocs()
	for i := range b.N {
		base := uint16(i * 20)
		t := simStart + int64(i)*64*ms
		sendRun(e, base, 20, t)
		fb.BaseSequenceNumber, fb.ReferenceTime = base, uint32(i)&0xffffff
		e.Feedback(fb, t+80*ms)
	}
}
