package express

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/services/media/vp8"
)

// TestPatternOptions configure NewTestPattern; zero values take defaults.
type TestPatternOptions struct {
	Width, Height int           // 320x240
	FPS           int           // 30
	Bitrate       int           // video bits per second, 500_000
	GOP           time.Duration // keyframe interval, 2 s
	// Simulcast sends the video as three layers, RIDs "q", "h" and "f" as
	// browsers name them: Width x Height at Bitrate, half the size at
	// about 0.24 of it, a quarter of the size at about 0.06 (1280x720 at
	// 2.5 Mbit/s gives 640x360 at 600 kbit/s and 320x180 at 150 kbit/s),
	// each with its own keyframes.
	Simulcast bool
}

// Simulcast layer RIDs of the test pattern, lowest first.
const (
	RIDQuarter = "q"
	RIDHalf    = "h"
	RIDFull    = "f"
)

// TestPattern is a MediaSource of VP8 video and Opus audio made without an
// encoder, for tools, tests and benchmarks. The video frames are valid VP8
// frame headers (keyframes carry the 9d 01 2a start code and the picture
// size) followed by filler up to the configured bitrate: enough for an
// RTP-level SFU, a depacketizer and a keyframe check, not for a real
// decoder to paint a picture. The audio is Opus silence (one 20 ms CELT
// frame every 20 ms). A keyframe is sent every GOP and on RequestKeyframe
// (on one simulcast layer: RequestLayerKeyframe).
type TestPattern struct {
	opts   TestPatternOptions
	layers []*patternLayer // lowest first
	audio  *webrtc.TrackLocalStaticSample
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	frames atomic.Int64
}

// patternLayer is one video layer of a test pattern.
type patternLayer struct {
	track                  *webrtc.TrackLocalStaticSample
	width, height, bitrate int
	keyframe               atomic.Bool
	lastKey                time.Time // the video goroutine's
}

// NewTestPattern starts generating; Close stops it.
func NewTestPattern(opts TestPatternOptions) (*TestPattern, error) {
	if opts.Width <= 0 {
		opts.Width = 320
	}
	if opts.Height <= 0 {
		opts.Height = 240
	}
	if opts.FPS <= 0 {
		opts.FPS = 30
	}
	if opts.Bitrate <= 0 {
		opts.Bitrate = 500_000
	}
	if opts.GOP <= 0 {
		opts.GOP = 2 * time.Second
	}
	p := &TestPattern{opts: opts, stop: make(chan struct{})}
	type spec struct {
		rid                    string
		width, height, bitrate int
	}
	specs := []spec{{"", opts.Width, opts.Height, opts.Bitrate}}
	if opts.Simulcast {
		specs = []spec{
			{RIDQuarter, opts.Width / 4, opts.Height / 4, opts.Bitrate * 6 / 100},
			{RIDHalf, opts.Width / 2, opts.Height / 2, opts.Bitrate * 24 / 100},
			{RIDFull, opts.Width, opts.Height, opts.Bitrate},
		}
	}
	for _, sp := range specs {
		var o []func(*webrtc.TrackLocalStaticRTP)
		if sp.rid != "" {
			o = append(o, webrtc.WithRTPStreamID(sp.rid))
		}
		video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "onair-test-pattern", o...)
		if err != nil {
			return nil, err
		}
		l := &patternLayer{track: video, width: max(sp.width, 16), height: max(sp.height, 16), bitrate: max(sp.bitrate, 8000)}
		l.keyframe.Store(true)
		p.layers = append(p.layers, l)
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		"audio", "onair-test-pattern")
	if err != nil {
		return nil, err
	}
	p.audio = audio
	p.wg.Add(2)
	go p.runVideo()
	go p.runAudio()
	return p, nil
}

// Tracks returns the video track (its layers, lowest first, with
// Simulcast) and the audio track.
func (p *TestPattern) Tracks() []webrtc.TrackLocal {
	var ts []webrtc.TrackLocal
	for _, l := range p.layers {
		ts = append(ts, l.track)
	}
	return append(ts, p.audio)
}

// RequestKeyframe makes the next video frame of every layer a keyframe.
func (p *TestPattern) RequestKeyframe() {
	for _, l := range p.layers {
		l.keyframe.Store(true)
	}
}

// RequestLayerKeyframe makes the next video frame of layer rid a keyframe.
func (p *TestPattern) RequestLayerKeyframe(rid string) {
	for _, l := range p.layers {
		if l.track.RID() == rid {
			l.keyframe.Store(true)
		}
	}
}

// Frames is how many video frames were generated.
func (p *TestPattern) Frames() int64 { return p.frames.Load() }

// Close stops generating.
func (p *TestPattern) Close() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}

func (p *TestPattern) runVideo() {
	defer p.wg.Done()
	every := time.Second / time.Duration(p.opts.FPS)
	t := time.NewTicker(every)
	defer t.Stop()
	var n uint32
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		n++
		for _, l := range p.layers {
			key := l.keyframe.Swap(false) || time.Since(l.lastKey) >= p.opts.GOP
			if key {
				l.lastKey = time.Now()
			}
			frameSize := max(l.bitrate/8/p.opts.FPS, 16)
			if key {
				frameSize *= 3 // keyframes are bigger, as with a real encoder
			}
			_ = l.track.WriteSample(media.Sample{Data: VP8Frame(key, l.width, l.height, frameSize, n), Duration: every})
		}
		p.frames.Add(1)
	}
}

// opusSilence is one 20 ms CELT fullband frame of silence (TOC 0xf8).
var opusSilence = []byte{0xf8, 0xff, 0xfe}

func (p *TestPattern) runAudio() {
	defer p.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		_ = p.audio.WriteSample(media.Sample{Data: opusSilence, Duration: 20 * time.Millisecond})
	}
}

// VP8Frame builds a VP8 frame of size bytes: the frame tag (keyframe bit,
// version 0, shown, first partition size), for keyframes the start code and
// the picture size, then filler that carries seq.
func VP8Frame(key bool, width, height, size int, seq uint32) []byte {
	hdr := 3
	if key {
		hdr = 10
	}
	size = max(size, hdr+4)
	b := make([]byte, size)
	part := uint32(size - hdr)
	tag := part<<5 | 1<<4 // show_frame, version 0
	if !key {
		tag |= 1 // inter frame
	}
	b[0], b[1], b[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	if key {
		b[3], b[4], b[5] = 0x9d, 0x01, 0x2a
		binary.LittleEndian.PutUint16(b[6:], uint16(width&0x3fff))
		binary.LittleEndian.PutUint16(b[8:], uint16(height&0x3fff))
	}
	binary.BigEndian.PutUint32(b[hdr:], seq)
	return b
}

// VP8Keyframe reports whether frame is a VP8 keyframe with a valid header,
// and its picture size.
func VP8Keyframe(frame []byte) (width, height int, ok bool) { return vp8.KeyframeSize(frame) }
