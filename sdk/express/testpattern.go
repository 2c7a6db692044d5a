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
}

// TestPattern is a MediaSource of VP8 video and Opus audio made without an
// encoder, for tools, tests and benchmarks. The video frames are valid VP8
// frame headers (keyframes carry the 9d 01 2a start code and the picture
// size) followed by filler up to the configured bitrate: enough for an
// RTP-level SFU, a depacketizer and a keyframe check, not for a real
// decoder to paint a picture. The audio is Opus silence (one 20 ms CELT
// frame every 20 ms). A keyframe is sent every GOP and on RequestKeyframe.
type TestPattern struct {
	opts     TestPatternOptions
	video    *webrtc.TrackLocalStaticSample
	audio    *webrtc.TrackLocalStaticSample
	keyframe atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	frames   atomic.Int64
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
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "onair-test-pattern")
	if err != nil {
		return nil, err
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		"audio", "onair-test-pattern")
	if err != nil {
		return nil, err
	}
	p := &TestPattern{opts: opts, video: video, audio: audio, stop: make(chan struct{})}
	p.keyframe.Store(true)
	p.wg.Add(2)
	go p.runVideo()
	go p.runAudio()
	return p, nil
}

// Tracks returns the video and the audio track.
func (p *TestPattern) Tracks() []webrtc.TrackLocal { return []webrtc.TrackLocal{p.video, p.audio} }

// RequestKeyframe makes the next video frame a keyframe.
func (p *TestPattern) RequestKeyframe() { p.keyframe.Store(true) }

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
	size := max(p.opts.Bitrate/8/p.opts.FPS, 16)
	lastKey := time.Time{}
	var n uint32
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		key := p.keyframe.Swap(false) || time.Since(lastKey) >= p.opts.GOP
		if key {
			lastKey = time.Now()
		}
		n++
		frameSize := size
		if key {
			frameSize = size * 3 // keyframes are bigger, as with a real encoder
		}
		_ = p.video.WriteSample(media.Sample{Data: VP8Frame(key, p.opts.Width, p.opts.Height, frameSize, n), Duration: every})
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
