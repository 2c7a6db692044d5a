package sfu

import (
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discard is where a benchmark's downtracks write: the edge's path up to
// pion's SRTP writer, without the socket.
type discard struct{ n atomic.Int64 }

func (d *discard) WriteRTP(h *rtp.Header, p []byte) (int, error) { d.n.Add(1); return len(p), nil }
func (d *discard) Write(b []byte) (int, error)                   { return len(b), nil }

// BenchmarkForward: one packet into a publisher track's cache and out to
// each of 50 players' downtracks (cache read, rewrite, write), the steady
// state of the edge's fast path. It must not allocate.
//
//	go test ./services/media -run '^$' -bench Forward -benchmem
func BenchmarkForward(b *testing.B) { benchForward(b, false) }

// BenchmarkForwardTWCC: the same with players that negotiated
// transport-wide congestion control: every packet also gets a
// transport-wide sequence number and goes into the player's bandwidth
// estimator's send history. It must not allocate either.
func BenchmarkForwardTWCC(b *testing.B) { benchForward(b, true) }

func benchForward(b *testing.B, twcc bool) {
	const players = 50
	u := NewUpTrack(nil, webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, 0)
	var egress atomic.Int64
	sub := NewPlayer(nil, nil, &egress, &DelayHist{})
	w := &discard{}
	var dts []*downTrack
	for i := range players {
		d := newDownTrack(sub, u, "s")
		d.ssrc, d.ws, d.codecs = uint32(1000+i), w, []webrtc.RTPCodecParameters{u.Codec()}
		if twcc {
			d.twccID = 3
		}
		d.bound.Store(true)
		dts = append(dts, d)
	}
	payload := make([]byte, 1100)
	ext := uint64(1 << 16)
	insert := func(key bool) {
		payload[0] = 0x10
		if key {
			payload[1] = 0
		} else {
			payload[1] = 1
		}
		u.cache.insert(ext, 0, uint32(ext/4)*3000, 96, ext%4 == 3, payload)
		if key {
			u.cache.setKeyframe(ext)
		}
		ext++
	}
	insert(true)
	for _, d := range dts {
		d.pump(0)
	}
	for i := range 2000 {
		insert(i%240 == 0) // a keyframe every 2 s at 120 packets/s
		for _, d := range dts {
			d.pump(0)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		insert(i%240 == 0)
		for _, d := range dts {
			d.pump(0)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*players), "ns/egress-pkt")
	if w.n.Load() < int64(b.N*players) {
		b.Fatalf("%d packets written, want %d", w.n.Load(), b.N*players)
	}
}
