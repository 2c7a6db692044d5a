package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/sfu"
)

// Pull is this edge pulling a stream from an upstream edge: the local
// stream o (players, downstream edges) fed from the upstream connection.
type Pull struct {
	r      *Relay
	key    StreamKey
	roomID string
	o      Stream

	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{}
	done   chan struct{}

	readyOnce, doneOnce sync.Once
	pli                 chan uint32
	// layers: which simulcast layers to ask the upstream for (layers.go).
	layers pullLayers
	// moved: the registry named another origin while pulling.
	moved atomic.Bool

	mu       sync.Mutex
	upstream string // the edge pulled from now
	tracks   map[uint32]*sfu.UpTrack
	linger   *time.Timer
	// originEdge is the origin the registry named for the current pull.
	originEdge string
	pulls      int // upstream connections made (for tests)
	// first is the record the pull was started with: the first upstream
	// connection uses it rather than looking the stream up again (the
	// play that started the pull has just done so); later ones read the
	// registry afresh.
	first *streamv1.StreamRecord
}

// Pull is the local stream of st, a stream published on another edge,
// pulling it if this edge does not already: it returns once the stream's
// tracks are known.
func (r *Relay) Pull(ctx context.Context, st *streamv1.StreamRecord) (Stream, error) {
	key := StreamKey{App: st.GetAppId(), Stream: st.GetStreamId()}
	r.mu.Lock()
	if r.edge.Closing() {
		r.mu.Unlock()
		return nil, errcode.New(errcode.ServiceUnavailable, "the media edge is shutting down")
	}
	p := r.pulls[key]
	if p == nil {
		p = &Pull{r: r, key: key, roomID: st.GetRoomId(), ready: make(chan struct{}), done: make(chan struct{}),
			pli: make(chan uint32, 16), tracks: map[uint32]*sfu.UpTrack{}, first: st, layers: newPullLayers()}
		p.o = r.edge.NewStream(key, st.GetRoomId(), st.GetUserId(), p)
		p.ctx, p.cancel = context.WithCancel(context.Background())
		r.pulls[key] = p
		go p.run()
	}
	r.mu.Unlock()
	p.Touch()
	return p.wait(ctx)
}

func (p *Pull) wait(ctx context.Context) (Stream, error) {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-p.ready:
		if p.o.Ended() {
			return nil, errcode.Newf(errcode.StreamNotFound, "stream %q ended", p.key.Stream)
		}
		return p.o, nil
	case <-p.done:
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q is not live", p.key.Stream)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errcode.Newf(errcode.ServiceUnavailable, "stream %q could not be pulled from its origin", p.key.Stream)
	}
}

// Touch (re)starts the linger: a pull with no player and no downstream
// edge when it fires ends.
func (p *Pull) Touch() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.linger == nil {
		p.linger = time.AfterFunc(p.r.cfg.Linger, p.lingerDone)
		return
	}
	p.linger.Reset(p.r.cfg.Linger)
}

// Idle: a player or downstream edge left; the linger starts if it was the
// last.
func (p *Pull) Idle() {
	if pl, d := p.o.Counts(); pl == 0 && d == 0 {
		p.Touch()
	}
}

func (p *Pull) lingerDone() {
	if pl, d := p.o.Counts(); pl > 0 || d > 0 {
		return
	}
	p.end(streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED)
}

// end stops pulling and ends the local stream: its players are told the
// stream ended.
func (p *Pull) end(reason streamv1.DeleteReason) {
	p.r.mu.Lock()
	if p.r.pulls[p.key] == p {
		delete(p.r.pulls, p.key)
	}
	p.r.mu.Unlock()
	p.cancel()
	p.mu.Lock()
	if p.linger != nil {
		p.linger.Stop()
	}
	p.mu.Unlock()
	p.o.End(reason)
	p.doneOnce.Do(func() { close(p.done) })
}

// fail ends the pull with its players failed (they retry), not told the
// stream ended.
func (p *Pull) fail() {
	p.o.FailPlayers()
	p.end(streamv1.DeleteReason_DELETE_REASON_DISCONNECTED)
}

func (p *Pull) run() {
	var failing time.Time
	for {
		if p.ctx.Err() != nil {
			return
		}
		got, ended, err := p.pullOnce()
		if p.ctx.Err() != nil {
			return
		}
		if got {
			failing = time.Time{}
		}
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		st, gerr := p.r.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: p.key.App, StreamId: p.key.Stream})
		cancel()
		p.mu.Lock()
		originEdge := p.originEdge
		p.mu.Unlock()
		gone := errcode.Of(gerr) == errcode.StreamNotFound || (gerr == nil && st.GetStream().GetEnded())
		switch {
		case gone && !ended:
			// The upstream broke and the stream left the registry: its
			// origin died (reason 5). Players fail, as the origin's do,
			// and their SDKs retry.
			p.fail()
			return
		case gone:
			p.end(streamv1.DeleteReason_DELETE_REASON_STOPPED)
			return
		case ended && gerr == nil && st.GetStream().GetEdgeId() == originEdge && originEdge != "":
			// It ended where it is published, not moved: over.
			p.end(streamv1.DeleteReason_DELETE_REASON_STOPPED)
			return
		}
		if failing.IsZero() {
			failing = time.Now()
		} else if time.Since(failing) > giveUp {
			p.r.cfg.Logger.Warn("media: relay gives up", "stream", p.key.Stream, "err", err)
			p.fail()
			return
		}
		p.r.Counters.Repulls.Add(1)
		if p.moved.Swap(false) {
			continue // the stream moved: pull from its new origin now
		}
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pullOnce pulls from the origin the registry names (or the edge it
// redirects to) until the upstream breaks or ends. got: tracks arrived.
func (p *Pull) pullOnce() (got, ended bool, err error) {
	p.mu.Lock()
	first := p.first
	p.first = nil
	p.mu.Unlock()
	st := &streamv1.GetStreamResponse{Stream: first}
	if first == nil {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		var err error
		st, err = p.r.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: p.key.App, StreamId: p.key.Stream})
		cancel()
		if err != nil {
			return false, false, err
		}
	}
	p.mu.Lock()
	p.originEdge = st.GetStream().GetEdgeId()
	p.mu.Unlock()
	addr := st.GetStream().GetEdgeAddr()
	for hop := 0; hop < 8; hop++ {
		if addr == p.r.cfg.EdgeAddr && st.GetStream().GetEdgeId() != p.r.cfg.EdgeID {
			return false, false, errcode.New(errcode.ServiceUnavailable, "relay redirected to itself")
		}
		cc, err := p.r.pool.conn(addr)
		if err != nil {
			return false, false, err
		}
		sctx, scancel := context.WithCancel(p.ctx)
		stream, err := mediav1.NewMediaRelayServiceClient(cc).Relay(sctx)
		if err == nil {
			err = stream.Send(&mediav1.RelayUpstream{Open: &mediav1.RelayOpen{AppId: p.key.App, StreamId: p.key.Stream,
				EdgeId: p.r.cfg.EdgeID, EdgeAddr: p.r.cfg.EdgeAddr, SelectLayers: true}})
		}
		var m *mediav1.RelayDownstream
		if err == nil {
			m, err = stream.Recv()
		}
		if err != nil {
			scancel()
			return false, false, err
		}
		if next := m.GetRedirectAddr(); next != "" {
			scancel()
			addr = next
			continue
		}
		p.mu.Lock()
		p.upstream = addr
		p.pulls++
		originEdge := p.originEdge
		p.mu.Unlock()
		defer scancel()
		for started := false; ; {
			if len(m.GetTracks()) > 0 {
				p.setTracks(m.GetTracks())
				got = true
			}
			p.layerStats(m.GetLayers())
			p.ingest(m.GetPackets())
			if !started {
				// The first message named the tracks: wants
				// sent from now on are about them.
				started = true
				// The publisher moving to another edge: pull
				// from there at once (move.go).
				go p.watchMove(sctx, originEdge, func() {
					p.moved.Store(true)
					p.r.Counters.Moves.Add(1)
					scancel()
				})
				go p.send(sctx, stream)
			}
			if m.GetEnded() {
				return got, true, nil
			}
			if m, err = stream.Recv(); err != nil {
				return got, false, err
			}
		}
	}
	return false, false, errcode.New(errcode.ServiceUnavailable, "too many relay redirects")
}

// send sends the upstream what this edge asks of it: keyframe requests,
// and the simulcast layers it wants whenever they change (layers.go). It
// is the stream's one sender after open.
func (p *Pull) send(ctx context.Context, stream mediav1.MediaRelayService_RelayClient) {
	t := time.NewTicker(layerLinger / 4)
	defer t.Stop()
	p.layers.reconnected()
	for {
		var m *mediav1.RelayUpstream
		select {
		case <-ctx.Done():
			return
		case id := <-p.pli:
			m = &mediav1.RelayUpstream{Keyframe: []uint32{id}}
		case <-p.layers.changed:
		case <-t.C:
		}
		if m == nil {
			l := p.layers.next(time.Now())
			if l == nil {
				continue
			}
			m = &mediav1.RelayUpstream{Layers: l}
		}
		if stream.Send(m) != nil {
			return
		}
	}
}

// layerStats files the upstream's figures of the simulcast layers.
func (p *Pull) layerStats(ls []*mediav1.RelayLayerStats) {
	if len(ls) == 0 {
		return
	}
	p.mu.Lock()
	tracks := p.tracks
	p.mu.Unlock()
	for _, l := range ls {
		if u := tracks[l.GetTrack()]; u != nil {
			u.SetLayerStats(l.GetBitrate(), int(l.GetWidth()), int(l.GetHeight()))
		}
	}
}

// setTracks makes the upstream's (new) tracks the local stream's source:
// players splice them in at their first keyframe.
func (p *Pull) setTracks(ts []*mediav1.RelayTrack) {
	var list []*sfu.UpTrack
	var ids []uint32
	in := map[uint32]*sfu.UpTrack{}
	groups := map[uint32]*sfu.LayerGroup{}
	for _, t := range ts {
		kind := webrtc.NewRTPCodecType(t.GetKind())
		c := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: t.GetMimeType(),
			ClockRate: t.GetClockRate(), Channels: uint16(t.GetChannels()), SDPFmtpLine: t.GetSdpFmtpLine()},
			PayloadType: webrtc.PayloadType(t.GetPayloadType())}
		u := sfu.NewUpTrack(nil, kind, c, p.r.cfg.PLIInterval)
		if g := groups[t.GetGroup()]; g != nil {
			u.SetLayer(g, t.GetRid())
		} else {
			groups[t.GetGroup()] = u.Group()
			u.SetLayer(u.Group(), t.GetRid())
		}
		id := t.GetId()
		u.SetUpstream(id|1<<31, func() {
			select {
			case p.pli <- id:
			default:
			}
		})
		list = append(list, u)
		ids = append(ids, id)
		in[id] = u
	}
	p.layers.setTracks(list, ids)
	p.mu.Lock()
	p.tracks = in
	p.mu.Unlock()
	p.o.Adopt(list)
	p.readyOnce.Do(func() { close(p.ready) })
}

// ingest files upstream packets in their tracks (UpTrack.Ingest, the path
// a publisher's packets take too), and wakes the tracks' players once per
// message.
func (p *Pull) ingest(pkts []*mediav1.RelayPacket) {
	if len(pkts) == 0 {
		return
	}
	p.mu.Lock()
	tracks := p.tracks
	p.mu.Unlock()
	now := time.Now().UnixNano()
	touched := map[*sfu.UpTrack]struct{}{}
	for _, pk := range pkts {
		u := tracks[pk.GetTrack()]
		if u == nil || pk.GetSeq() == 0 {
			continue
		}
		payload := pk.GetPayload()
		// A packet sent again (a keyframe group) arrived here when it
		// arrived upstream, as far as freshness goes.
		at := now - int64(pk.GetAgeUs())*1000
		u.Ingest(pk.GetSeq(), at, pk.GetTimestamp(), uint8(pk.GetPayloadType()), pk.GetMarker(), payload)
		p.r.Counters.InPackets.Add(1)
		p.r.Counters.InOctets.Add(int64(len(payload)))
		touched[u] = struct{}{}
	}
	for u := range touched {
		u.Wake()
	}
}
