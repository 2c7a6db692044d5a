package relay

import (
	"context"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/grpcserver"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	"github.com/onair-dev/onair/services/media/sfu"
)

// Service is the edge's MediaRelayService: it serves pulling edges.
func (rl *Relay) Service() mediav1.MediaRelayServiceServer { return service{r: rl} }

type service struct {
	mediav1.UnimplementedMediaRelayServiceServer
	r *Relay
}

// Relay serves a pulling edge.
func (sv service) Relay(st mediav1.MediaRelayService_RelayServer) error {
	rl := sv.r
	ctx := st.Context()
	if err := grpcserver.RequireInternal(ctx); err != nil {
		return err
	}
	first, err := st.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil || open.GetStreamId() == "" {
		return errcode.New(errcode.InvalidParameter, "a relay starts with open")
	}
	key := StreamKey{App: open.GetAppId(), Stream: open.GetStreamId()}
	o, err := rl.source(ctx, key)
	if err != nil {
		return err
	}
	out := &Feed{o: o, edgeID: open.GetEdgeId(), edgeAddr: open.GetEdgeAddr(), kick: make(chan struct{}, 1),
		ids: map[*sfu.UpTrack]uint32{}, byID: map[uint32]*sfu.UpTrack{}, selects: open.GetSelectLayers(),
		wanted: map[*sfu.UpTrack]bool{}}
	out.sub = sfu.NewDownstream()
	if next, ok := o.AddDown(out, rl.cfg.Fanout); !ok {
		if next == "" {
			return errcode.Newf(errcode.StreamNotFound, "stream %q ended", key.Stream)
		}
		return st.Send(&mediav1.RelayDownstream{RedirectAddr: next})
	}
	rl.Counters.Downstreams.Add(1)
	defer func() {
		rl.Counters.Downstreams.Add(-1)
		o.RemoveDown(out)
		out.unsubscribeAll()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel()
		for {
			m, err := st.Recv()
			if err != nil {
				return
			}
			for _, id := range m.GetKeyframe() {
				if u := out.track(id); u != nil {
					u.RequestKeyframe(false)
				}
			}
			if l := m.GetLayers(); l != nil {
				out.want(l.GetTracks())
			}
		}
	}()
	return out.run(ctx, st, rl)
}

// source is the stream as this edge has it: published here, or pulled
// (waiting for a new pull's tracks).
func (rl *Relay) source(ctx context.Context, key StreamKey) (Stream, error) {
	if o := rl.edge.Published(key); o != nil {
		return o, nil
	}
	o, err := rl.waitFor(ctx, key)
	if err == nil && o == nil {
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q is not on this edge", key.Stream)
	}
	return o, err
}

// Feed feeds one downstream edge: its own cursor in each track's shared
// cache, like a player's downtrack, but the packets go out as they are
// cached. A downstream edge that selects layers (layers.go) gets only the
// simulcast layers it wants, each from its latest keyframe group when it
// starts wanting it, and every layer's figures.
type Feed struct {
	o                Stream
	edgeID, edgeAddr string
	sub              *sfu.Player // wakeups only
	kick             chan struct{}
	picked           int  // times handed out as a redirect (the Stream's lock)
	selects          bool // RelayOpen.select_layers

	mu   sync.Mutex
	ids  map[*sfu.UpTrack]uint32
	byID map[uint32]*sfu.UpTrack
	next uint32
	cur  []*sfu.UpTrack
	// wanted are the layers the downstream edge wants (selects).
	wanted map[*sfu.UpTrack]bool
}

func (r *Feed) track(id uint32) *sfu.UpTrack {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

func (r *Feed) unsubscribeAll() {
	r.mu.Lock()
	cur := r.cur
	r.cur = nil
	r.mu.Unlock()
	for _, u := range cur {
		u.Unsubscribe(r.sub)
	}
}

func sameTracks(a, b []*sfu.UpTrack) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (r *Feed) run(ctx context.Context, st mediav1.MediaRelayService_RelayServer, rl *Relay) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	// Per track: the next packet to send (0: not started), the end of the
	// keyframe group being sent again (packets before it carry their age),
	// whether the feed is subscribed to it, and whether it is a simulcast
	// layer.
	var cursors, replayTo []uint64
	var subscribed, layer []bool
	var stats layerStats
	buf := make([]byte, sfu.MaxPayload+100)
	for {
		if r.o.Ended() {
			if rl.edge.Closing() {
				// The edge is going away, not the stream: the
				// downstream edge pulls again elsewhere.
				return errcode.New(errcode.ServiceUnavailable, "the media edge shut down")
			}
			return st.Send(&mediav1.RelayDownstream{Ended: true})
		}
		tracks := r.o.Tracks()
		r.mu.Lock()
		changed := !sameTracks(r.cur, tracks)
		var old []*sfu.UpTrack
		var msg *mediav1.RelayDownstream
		if changed {
			old, r.cur = r.cur, tracks
			clear(r.ids)
			clear(r.byID)
			clear(r.wanted)
			msg = &mediav1.RelayDownstream{}
			for _, u := range tracks {
				r.next++
				r.ids[u], r.byID[r.next] = r.next, u
				c := u.Codec()
				msg.Tracks = append(msg.Tracks, &mediav1.RelayTrack{Id: r.next, Kind: u.Kind().String(), MimeType: c.MimeType,
					ClockRate: c.ClockRate, Channels: uint32(c.Channels), SdpFmtpLine: c.SDPFmtpLine, PayloadType: uint32(c.PayloadType),
					Rid: u.RID(), Group: groupNumber(tracks, u)})
			}
		}
		ids := make([]uint32, len(tracks))
		wanted := make([]bool, len(tracks))
		for i, u := range tracks {
			ids[i] = r.ids[u]
			wanted[i] = r.wanted[u]
		}
		r.mu.Unlock()
		if changed {
			for _, u := range old {
				u.Unsubscribe(r.sub)
			}
			cursors, replayTo = make([]uint64, len(tracks)), make([]uint64, len(tracks))
			subscribed, layer = make([]bool, len(tracks)), simulcastLayers(tracks)
			stats = layerStats{}
			if err := st.Send(msg); err != nil {
				return err
			}
		}
		now := time.Now().UnixNano()
		if r.selects {
			if m := stats.due(tracks, ids, layer, now); m != nil {
				if err := st.Send(m); err != nil {
					return err
				}
			}
		}
		// Everything new in every track sent, in batches.
		var batch []*mediav1.RelayPacket
		octets := 0
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			rl.Counters.OutPackets.Add(int64(len(batch)))
			rl.Counters.OutOctets.Add(int64(octets))
			err := st.Send(&mediav1.RelayDownstream{Packets: batch})
			batch, octets = nil, 0
			return err
		}
		for i, u := range tracks {
			if r.selects && layer[i] && !wanted[i] {
				// A layer the downstream edge does not want: not
				// sent, nor woken for; started again from a
				// keyframe group when wanted.
				if subscribed[i] {
					u.Unsubscribe(r.sub)
					subscribed[i] = false
				}
				cursors[i] = 0
				continue
			}
			if !subscribed[i] {
				u.Subscribe(r.sub)
				subscribed[i] = true
			}
			head := u.Head()
			if head == 0 {
				continue
			}
			video := u.Kind() == webrtc.RTPCodecTypeVideo
			if cursors[i] == 0 {
				if !video {
					cursors[i] = head - 1
				} else if ks, h, ok := u.KeyframeGroup(); ok {
					cursors[i], replayTo[i] = ks, h
				} else {
					u.RequestKeyframe(true)
					continue
				}
			}
			if head > cursors[i]+maxLag {
				target := head - 1
				if ks, h, ok := u.KeyframeGroup(); video && ok && ks > cursors[i] {
					target, replayTo[i] = ks, h
				} else if video {
					u.RequestKeyframe(false)
				}
				cursors[i] = target
			}
			for cursors[i] < head {
				ext := cursors[i]
				cursors[i]++
				p, ok := u.Read(ext, buf, now)
				if !ok {
					continue
				}
				pk := &mediav1.RelayPacket{Track: ids[i], Seq: ext, Timestamp: p.TS, PayloadType: uint32(p.PT),
					Marker: p.Marker, Payload: append([]byte(nil), buf[:p.N]...)}
				if ext < replayTo[i] {
					pk.AgeUs = ageMicros(now - p.At)
				}
				batch = append(batch, pk)
				octets += p.N
				if len(batch) >= batchPackets {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.sub.Wakeups():
		case <-r.kick:
		case <-t.C:
		}
	}
}

// groupNumber numbers u's layer group among tracks (the index of its first
// layer), so the pulling edge puts the same simulcast layers together.
func groupNumber(tracks []*sfu.UpTrack, u *sfu.UpTrack) uint32 {
	for i, x := range tracks {
		if x.Group() == u.Group() {
			return uint32(i)
		}
	}
	return 0
}
