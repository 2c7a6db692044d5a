package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/bench/netshape"
	"github.com/onair-dev/onair/bench/viewer"
)

// player is one LiveKit subscriber on its link.
type player struct {
	name string
	port int
	link netshape.Link
	net  *netshape.Net // nil on a clean link
	room *lksdk.Room
	// window is measured from the end of the warm-up; joined from the join
	// request, for when the layer settled and the first frame.
	window, joined *viewer.Meter
	joinedAt       time.Time

	mu         sync.Mutex
	firstVideo time.Duration // first video packet since joinedAt
	// pli asks the publisher's participant for a keyframe of the video
	// track; nil until it is subscribed.
	pli  func()
	plis int
	stop chan struct{}
	wg   sync.WaitGroup
}

// play joins the room as player i on c.link, subscribing to the
// publisher's tracks and asking for c.quality of its video.
func play(ctx context.Context, c config, i int, log *slog.Logger) (*player, error) {
	p := &player{
		name:   fmt.Sprintf("p%d", i+1),
		port:   c.port + i,
		link:   c.link,
		window: viewer.NewMeter(),
		joined: viewer.NewMeter(),
		stop:   make(chan struct{}),
	}
	if !c.link.Clean() {
		n, err := netshape.NewNet(p.port, c.link, uint64(i+1))
		if err != nil {
			return nil, err
		}
		p.net = n
	}
	cb := &lksdk.RoomCallback{ParticipantCallback: lksdk.ParticipantCallback{
		OnTrackSubscribed: func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
			if track.Kind() == webrtc.RTPCodecTypeVideo {
				// What a browser player asks for with
				// setVideoQuality(VideoQuality.HIGH).
				if err := pub.SetVideoQuality(c.quality); err != nil {
					log.Warn("set video quality", "player", p.name, "err", err)
				}
				ssrc := track.SSRC()
				p.mu.Lock()
				p.pli = func() { rp.WritePLI(ssrc) }
				p.mu.Unlock()
			}
			p.wg.Add(1)
			go p.read(track)
		},
		OnTrackSubscriptionFailed: func(sid string, _ *lksdk.RemoteParticipant) {
			log.Warn("subscription failed", "player", p.name, "track", sid)
		},
	}, OnDisconnected: func() { log.Info("disconnected", "player", p.name) }}
	p.joinedAt = time.Now()
	p.joined.Start(p.joinedAt)
	room, err := connect(ctx, c, p.name, cb, true, func(se *webrtc.SettingEngine, conf *webrtc.Configuration, subscriber bool) {
		loopbackOnly(se, conf)
		if subscriber && p.net != nil {
			// The receiving connection's one socket: on the pinned port,
			// which the Shaper's class caps, with the link's delay and
			// loss. (The player's publishing connection carries nothing
			// here and stays unshaped.)
			se.SetNet(p.net)
		}
		if subscriber {
			_ = se.SetEphemeralUDPPortRange(uint16(p.port), uint16(p.port))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("player %s: %w", p.name, err)
	}
	p.room = room
	if c.pliAfter > 0 {
		p.wg.Add(1)
		go p.askKeyframes(c.pliAfter, log)
	}
	log.Info("joined", "player", p.name, "port", p.port, "link", c.link.String(), "quality", livekit.VideoQuality_name[int32(c.quality)])
	return p, nil
}

// read feeds a subscribed track's packets to the meters (video) or drops
// them (audio), until the track ends.
func (p *player) read(track *webrtc.TrackRemote) {
	defer p.wg.Done()
	video := track.Kind() == webrtc.RTPCodecTypeVideo
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		if !video {
			continue
		}
		now := time.Now()
		p.mu.Lock()
		if p.firstVideo == 0 {
			p.firstVideo = now.Sub(p.joinedAt)
		}
		p.mu.Unlock()
		p.joined.Packet(pkt, now)
		p.window.Packet(pkt, now)
	}
}

// askKeyframes sends a PLI when video packets keep arriving but no frame
// has been rendered for after, and again every after while that lasts: a
// pion receiver, unlike a browser's, never asks for a keyframe when its
// decoder's reference chain breaks (a packet lost for good), so without this
// a player would stay frozen until the publisher's next keyframe for some
// other reason. libwebrtc's receiver asks again every 200 ms while it waits
// for a keyframe, and after 3 s without a decodable frame otherwise.
func (p *player) askKeyframes(after time.Duration, log *slog.Logger) {
	defer p.wg.Done()
	tick := time.NewTicker(after / 5)
	defer tick.Stop()
	var frames, packets int
	lastRender, lastAsk := time.Now(), time.Time{}
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		r := p.joined.Report(now)
		arriving := r.Packets > packets
		if r.Frames != frames || !arriving {
			frames, packets, lastRender = r.Frames, r.Packets, now
			continue
		}
		packets = r.Packets
		if now.Sub(lastRender) < after || now.Sub(lastAsk) < after {
			continue
		}
		p.mu.Lock()
		pli := p.pli
		if pli != nil {
			p.plis++
		}
		p.mu.Unlock()
		if pli != nil {
			pli()
			lastAsk = now
			log.Info("keyframe request", "player", p.name, "since render", now.Sub(lastRender).Round(time.Millisecond))
		}
	}
}

// keyframeRequests is how many PLIs the player sent.
func (p *player) keyframeRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plis
}

// Close leaves the room and waits for the readers.
func (p *player) Close() {
	close(p.stop)
	if p.room != nil {
		p.room.Disconnect()
	}
	p.wg.Wait()
}
