package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/internal/iceloopback"
)

// layer is one simulcast layer the publisher sends.
type layer struct {
	quality       livekit.VideoQuality
	width, height int
	bps           int
}

// simulcastLayers are issue 20's three, as onair bench fanout --simulcast
// sends them: 1280x720 at bitrate, 640x360 and 320x180 at 24 % and 6 % of it
// (2.4 Mbit/s, 576 and 144 kbit/s by default), what a browser sends for a
// 720p camera.
func simulcastLayers(bitrate int) []layer {
	return []layer{
		{livekit.VideoQuality_HIGH, 1280, 720, bitrate},
		{livekit.VideoQuality_MEDIUM, 640, 360, bitrate * 24 / 100},
		{livekit.VideoQuality_LOW, 320, 180, bitrate * 6 / 100},
	}
}

const (
	fps = 30
	// keyframeScale is how much larger than an inter frame a keyframe is
	// (as onair bench fanout sends).
	keyframeScale = 3
)

// publisher is the LiveKit participant that sends the simulcast track.
type publisher struct {
	layers []layer
	room   *lksdk.Room
	tracks []*lksdk.LocalTrack
	audio  *lksdk.LocalTrack
	// keyframe[i] is set when layer i was asked for a keyframe.
	keyframe []atomic.Bool
	// requests counts the PLIs and FIRs per layer.
	requests []atomic.Int64
	// frames counts the frame times the sender has run: fewer than 30 a
	// second means the bench's own process was short of CPU.
	frames atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

// publish joins the room and starts sending. Close stops it.
func publish(ctx context.Context, c config, log *slog.Logger) (*publisher, error) {
	layers := simulcastLayers(c.bitrate)
	p := &publisher{
		layers:   layers,
		keyframe: make([]atomic.Bool, len(layers)),
		requests: make([]atomic.Int64, len(layers)),
		stop:     make(chan struct{}),
	}
	for i, l := range layers {
		var ssrc atomic.Uint32
		t, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			lksdk.WithSimulcast("onair-bench", &livekit.VideoLayer{
				Quality: l.quality, Width: uint32(l.width), Height: uint32(l.height), Bitrate: uint32(l.bps),
			}),
			lksdk.WithRTCPHandler(func(pkt rtcp.Packet) {
				// Each layer is its own RTP stream: a request names the
				// SSRC whose keyframe it wants.
				var media uint32
				switch k := pkt.(type) {
				case *rtcp.PictureLossIndication:
					media = k.MediaSSRC
				case *rtcp.FullIntraRequest:
					media = k.MediaSSRC
				default:
					return
				}
				if s := ssrc.Load(); s == 0 || media == s {
					p.keyframe[i].Store(true)
					p.requests[i].Add(1)
				}
			}))
		if err != nil {
			return nil, err
		}
		t.OnBind(func() { ssrc.Store(uint32(t.SSRC())) })
		p.tracks = append(p.tracks, t)
	}
	audio, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		return nil, err
	}
	p.audio = audio
	room, err := connect(ctx, c, "publisher", &lksdk.RoomCallback{}, false,
		func(se *webrtc.SettingEngine, conf *webrtc.Configuration, _ bool) { loopbackOnly(se, conf) })
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	p.room = room
	if _, err := room.LocalParticipant.PublishSimulcastTrack(p.tracks, &lksdk.TrackPublicationOptions{
		Name: "video", Source: livekit.TrackSource_CAMERA, VideoWidth: layers[0].width, VideoHeight: layers[0].height,
	}); err != nil {
		room.Disconnect()
		return nil, fmt.Errorf("publish the simulcast track: %w", err)
	}
	if _, err := room.LocalParticipant.PublishTrack(audio, &lksdk.TrackPublicationOptions{
		Name: "audio", Source: livekit.TrackSource_MICROPHONE,
	}); err != nil {
		room.Disconnect()
		return nil, fmt.Errorf("publish the audio track: %w", err)
	}
	for i := range p.keyframe {
		p.keyframe[i].Store(true)
	}
	p.wg.Add(1)
	go p.send(c.gop, log)
	return p, nil
}

// send writes a frame on every layer 30 times a second (a keyframe when
// asked, and every gop when it is positive) and 20 ms of Opus silence at a
// time, until Close.
func (p *publisher) send(gop time.Duration, log *slog.Logger) {
	defer p.wg.Done()
	tick := time.NewTicker(time.Second / fps)
	defer tick.Stop()
	lastKey := make([]time.Time, len(p.layers))
	audioDue := time.Now()
	var n uint32
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		n++
		p.frames.Add(1)
		now := time.Now()
		for i, l := range p.layers {
			key := p.keyframe[i].Swap(false) || gop > 0 && now.Sub(lastKey[i]) >= gop
			size := l.bps / 8 / fps
			if key {
				lastKey[i] = now
				size *= keyframeScale
			}
			// A layer the server has paused (no subscriber wants it) drops
			// its samples in the SDK, as a browser stops encoding it.
			if err := p.tracks[i].WriteSample(media.Sample{Data: vp8Frame(key, l.width, l.height, size, n), Duration: time.Second / fps}, nil); err != nil {
				log.Debug("write sample", "layer", l.quality, "err", err)
			}
		}
		for ; !audioDue.After(now); audioDue = audioDue.Add(20 * time.Millisecond) {
			_ = p.audio.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil)
		}
	}
}

// Close stops sending and leaves the room.
func (p *publisher) Close() {
	close(p.stop)
	p.wg.Wait()
	p.room.Disconnect()
}

// keyframeRequests is how many PLIs and FIRs each layer got.
func (p *publisher) keyframeRequests() []int64 {
	out := make([]int64, len(p.requests))
	for i := range p.requests {
		out[i] = p.requests[i].Load()
	}
	return out
}

// loopbackOnly keeps a peer connection on one host candidate on lo: ICE
// restricted to loopback, and no ICE servers. LiveKit hands its clients STUN
// servers (Google's unless rtc.stun_servers names others); a server-reflexive
// gatherer would try them and, on a player, take its pinned port from the
// host candidate (pion gathers srflx on the same port range).
func loopbackOnly(se *webrtc.SettingEngine, conf *webrtc.Configuration) {
	iceloopback.Restrict(se)
	conf.ICEServers = nil
}

// connect joins the room as identity with the SDK's defaults (its NACK,
// RTCP report and transport-cc interceptors), setting each peer
// connection's pion SettingEngine and configuration with se
// (lksdk.WithSettingEngine, which bench/livekit/sdk.sh patches into the
// SDK).
func connect(ctx context.Context, c config, identity string, cb *lksdk.RoomCallback, subscribe bool,
	se func(*webrtc.SettingEngine, *webrtc.Configuration, bool)) (*lksdk.Room, error) {
	room := lksdk.NewRoom(cb)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := room.JoinWithContext(cctx, c.url, lksdk.ConnectInfo{
		APIKey: c.apiKey, APISecret: c.apiSecret, RoomName: c.room, ParticipantIdentity: identity,
	}, lksdk.WithAutoSubscribe(subscribe), lksdk.WithDisableRegionDiscovery(), lksdk.WithDisableTURN(),
		lksdk.WithSettingEngine(se))
	if err != nil {
		return nil, err
	}
	return room, nil
}
