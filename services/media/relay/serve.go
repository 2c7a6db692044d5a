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
		ids: map[*sfu.UpTrack]uint32{}, byID: map[uint32]*sfu.UpTrack{}}
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
// cached.
type Feed struct {
	o                Stream
	edgeID, edgeAddr string
	sub              *sfu.Player // wakeups only
	kick             chan struct{}
	picked           int // times handed out as a redirect (the Stream's lock)

	mu   sync.Mutex
	ids  map[*sfu.UpTrack]uint32
	byID map[uint32]*sfu.UpTrack
	next uint32
	cur  []*sfu.UpTrack
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
	var cursors []uint64
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
		for i, u := range tracks {
			ids[i] = r.ids[u]
		}
		r.mu.Unlock()
		if changed {
			for _, u := range old {
				u.Unsubscribe(r.sub)
			}
			for _, u := range tracks {
				u.Subscribe(r.sub)
			}
			cursors = make([]uint64, len(tracks))
			if err := st.Send(msg); err != nil {
				return err
			}
		}
		// Everything new in every track, in batches.
		now := time.Now().UnixNano()
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
			head := u.Head()
			if head == 0 {
				continue
			}
			video := u.Kind() == webrtc.RTPCodecTypeVideo
			if cursors[i] == 0 {
				if !video {
					cursors[i] = head - 1
				} else if ks, _, ok := u.KeyframeGroup(); ok {
					cursors[i] = ks
				} else {
					u.RequestKeyframe(true)
					continue
				}
			}
			if head > cursors[i]+maxLag {
				target := head - 1
				if ks, _, ok := u.KeyframeGroup(); video && ok && ks > cursors[i] {
					target = ks
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
				batch = append(batch, &mediav1.RelayPacket{Track: ids[i], Seq: ext, Timestamp: p.TS, PayloadType: uint32(p.PT),
					Marker: p.Marker, Payload: append([]byte(nil), buf[:p.N]...)})
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
