package media

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/sdk/express"
)

// lossSink counts a player's RTP packets and the sequence range they span.
type lossSink struct {
	mu             sync.Mutex
	got            int64
	first, highest map[uint32]uint32 // unwrapped sequence numbers per SSRC
	last           map[uint32]uint16
}

func newLossSink() *lossSink {
	return &lossSink{first: map[uint32]uint32{}, highest: map[uint32]uint32{}, last: map[uint32]uint16{}}
}

func (s *lossSink) WriteRTP(_ webrtc.RTPCodecParameters, p *rtp.Packet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got++
	h, ok := s.highest[p.SSRC]
	if !ok {
		s.first[p.SSRC], s.highest[p.SSRC], s.last[p.SSRC] = uint32(p.SequenceNumber), uint32(p.SequenceNumber), p.SequenceNumber
		return
	}
	d := int16(p.SequenceNumber - s.last[p.SSRC])
	if d > 0 {
		s.highest[p.SSRC] = h + uint32(d)
		s.last[p.SSRC] = p.SequenceNumber
	}
}

func (s *lossSink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = 0
	clear(s.first)
	clear(s.highest)
	clear(s.last)
}

func (s *lossSink) loss() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var want int64
	for ssrc, h := range s.highest {
		want += int64(h-s.first[ssrc]) + 1
	}
	if want == 0 {
		return 1
	}
	return max(0, 1-float64(s.got)/float64(want))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFanout: one publisher of the test pattern at ~2.5 Mbit/s to N
// SDK players through one edge, all in this process. It reports the edge's
// egress packets per CPU-second of the whole process (publisher, edge and
// players together: an edge alone does better) and the worst player's loss.
//
//	go test ./e2e/media -run '^$' -bench Fanout -benchtime 1x
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 4, 16, 32} {
		b.Run(fmt.Sprintf("players=%d", n), func(b *testing.B) {
			for range b.N {
				fanout(b, n)
			}
		})
	}
}

func fanout(b *testing.B, players int) {
	c := newCluster(b)
	nd := c.Start(allRoles...)
	host := c.login(nd.Addr(), "bench", "host")
	tp, err := express.NewTestPattern(express.TestPatternOptions{Bitrate: 2_500_000, Width: 1280, Height: 720})
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := host.e.StartPublishingStream(ctx, "s", tp, express.PublisherConfig{}); err != nil {
		b.Fatal(err)
	}
	sinks := make([]*lossSink, players)
	var firsts []time.Duration
	for i := range players {
		v := c.login(nd.Addr(), "bench", fmt.Sprintf("viewer%d", i))
		sinks[i] = newLossSink()
		start := time.Now()
		if err := v.e.StartPlayingStream(ctx, "s", sinks[i], express.PlayerConfig{}); err != nil {
			b.Fatal(err)
		}
		_ = v
		eventually(b, "first frame", func() bool { return v.has("firstframe s") })
		v.mu.Lock()
		firsts = append(firsts, v.firstFrame["s"].Sub(start))
		v.mu.Unlock()
	}
	time.Sleep(time.Second)
	for _, s := range sinks {
		s.reset()
	}
	eg0, cpu0, t0 := nd.MediaServer.Egress.Load(), cpuTime(), time.Now()
	time.Sleep(5 * time.Second)
	eg, cpu, wall := nd.MediaServer.Egress.Load()-eg0, cpuTime()-cpu0, time.Since(t0)
	worst := 0.0
	for _, s := range sinks {
		worst = max(worst, s.loss())
	}
	b.ReportMetric(float64(eg)/cpu.Seconds(), "egress-pkts/cpu-s")
	b.ReportMetric(float64(eg)/wall.Seconds(), "egress-pkts/s")
	b.ReportMetric(worst*100, "worst-loss-%")
	b.ReportMetric(float64(median(firsts).Microseconds())/1000, "first-frame-p50-ms")
	b.ReportMetric(float64(maxDur(firsts).Microseconds())/1000, "first-frame-max-ms")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func maxDur(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = max(m, x)
	}
	return m
}
