package sfu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testkit"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// seqWriter is a player's downtrack output that checks its packets come
// in order, each sequence number one more than the last.
type seqWriter struct {
	mu      sync.Mutex
	n       int
	last    uint16
	broken  string
	running atomic.Int32 // writers inside WriteRTP at once
}

func (w *seqWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	if w.running.Add(1) > 1 {
		w.fail("two workers forwarded one player at once")
	}
	defer w.running.Add(-1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n > 0 && h.SequenceNumber != w.last+1 && w.broken == "" {
		w.broken = "a gap or reorder in the sequence numbers"
	}
	w.n++
	w.last = h.SequenceNumber
	return len(p), nil
}

func (w *seqWriter) Write(b []byte) (int, error) { return len(b), nil }

func (w *seqWriter) fail(why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken == "" {
		w.broken = why
	}
}

func (w *seqWriter) count() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.broken
}

// Every packet of a publisher track reaches each of its players through the
// pool exactly once and in order, while wakes race the workers; a stopped
// player gets nothing more.
func TestForwardPoolDeliversInOrder(t *testing.T) {
	pool := NewForwardPool(4, nil)
	defer pool.Close()
	u := NewUpTrack(nil, webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, 0)
	ext := uint64(1 << 16)
	payload := make([]byte, 500)
	insert := func(key bool) {
		payload[0] = 0x10
		payload[1] = 1
		if key {
			payload[1] = 0
		}
		u.cache.insert(ext, time.Now().UnixNano(), uint32(ext)*3000, 96, true, payload)
		if key {
			u.cache.setKeyframe(ext)
		}
		ext++
	}
	insert(true)
	const players, packets = 40, 2000
	var egress atomic.Int64
	subs := make([]*Player, players)
	ws := make([]*seqWriter, players)
	for i := range subs {
		s := NewPlayer(nil, pool, &egress, &DelayHist{})
		d := newDownTrack(s, u, "s")
		ws[i] = &seqWriter{}
		d.ssrc, d.ws, d.codecs = uint32(1000+i), ws[i], []webrtc.RTPCodecParameters{u.Codec()}
		d.bound.Store(true)
		s.tracks = []*downTrack{d}
		s.active.Store(true)
		u.Subscribe(s)
		s.Start()
		subs[i] = s
	}
	for i := range packets {
		insert(false)
		u.Wake()
		if i%100 == 99 { // stay within a player's queue (maxLag)
			testkit.Eventually(t, "the players catching up", func() bool {
				for _, w := range ws {
					if n, _ := w.count(); n < i+2 {
						return false
					}
				}
				return true
			})
		}
	}
	for i, w := range ws {
		n, broken := w.count()
		if broken != "" || n != packets+1 {
			t.Fatalf("player %d: %d packets of %d: %s", i, n, packets+1, broken)
		}
	}
	subs[0].stop()
	insert(false)
	u.Wake()
	testkit.Eventually(t, "the others getting the last packet", func() bool {
		n, _ := ws[1].count()
		return n == packets+2
	})
	if n, _ := ws[0].count(); n != packets+1 {
		t.Fatalf("a stopped player got %d packets, want %d", n, packets+1)
	}
}
