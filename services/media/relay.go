package media

// Relays: one stream's audience spread over many edges.
//
// A stream has one origin edge, where it is published. A player in
// ResourceMode Default or OnlyL3 plays at the edge chosen for it
// (edgechoice.go); when that edge is not the origin, it pulls the stream
// once from an upstream edge, however many local players it has, and
// serves them with the same downtracks and keyframe cache as an origin: the
// relay is an origin whose source is the upstream connection rather than a
// publisher, so a relay player's first frame is a cached keyframe too, and
// a new upstream is spliced into its players like a publisher that came
// back.
//
// The tree: an edge feeds at most Config.RelayFanout edges directly. A pull
// asks the stream's origin first; an edge whose fan-out is full answers
// with one of the edges it feeds, which is asked in turn, so further edges
// hang below relay edges and the origin's egress stays bounded however many
// edges watch.
//
// Transport: RTP over a gRPC bidirectional stream (MediaRelayService.Relay),
// not a pion peer connection between edges. The reasons:
//   - Edges already talk gRPC to each other with the cluster's internal key;
//     the relay needs no signaling, ICE, DTLS or a second UDP port, and only
//     services can open it (grpcserver.RequireInternal).
//   - Edge-to-edge paths are datacenter paths: TCP repairs the rare loss in
//     well under a round trip of the player's path, so the relay needs no
//     NACK or retransmission of its own, and every downstream edge's cache
//     holds exactly the upstream's packets (same extended sequence numbers).
//   - One TCP connection per pair of edges carries every stream between
//     them (HTTP/2 streams), and keyframe requests travel back on the same
//     stream.
//   - Congestion: flow control pushes back on the sender, which reads the
//     shared cache at its own cursor and, if it falls too far behind, skips
//     to the latest keyframe group, as a slow player does; it delays no
//     other edge or player. The price is head-of-line blocking on a lossy
//     link, acceptable between edges of one cluster.
//
// Lifecycle: a pull ends Config.RelayLinger after its last local player and
// last downstream edge have gone. When its upstream breaks or ends, the
// pull asks the registry: a stream gone from the registry (or that ended on
// the origin it was pulling from) ends here too, players told as on the
// origin; otherwise (publisher back on another edge, a relay edge that
// died) it pulls again, from the origin the registry names, and the new
// source is spliced into its players, who stay connected.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/grpcserver"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// Relay defaults.
const (
	DefaultRelayFanout = 8
	DefaultRelayLinger = 10 * time.Second
	// relayReadyTimeout bounds how long a Play waits for a new pull's
	// tracks.
	relayReadyTimeout = 8 * time.Second
	// relayGiveUp: a pull that cannot reach any upstream for this long,
	// while the registry still names the stream, ends.
	relayGiveUp = 15 * time.Second
	// relayMaxLag: a downstream edge further behind than this many packets
	// of a track skips ahead.
	relayMaxLag = 2048
	// relayBatch bounds the packets of one message.
	relayBatch = 64
)

// relayState is the edge's relay bookkeeping (a field of Server).
type relayState struct {
	mu    sync.Mutex
	pulls map[streamKey]*relayPull
	conns map[string]*grpc.ClientConn

	outPackets, outOctets atomic.Int64
	downstreams           atomic.Int64
	// inPackets, inOctets: received from upstreams; repulls: upstream
	// connections lost or dropped and pulled again; moves: of those, the
	// stream moved to another origin (relaymove.go).
	inPackets, inOctets atomic.Int64
	repulls, moves      atomic.Int64

	// Edge choice (edgechoice.go).
	placeMu    sync.Mutex
	placed     map[string][]time.Time
	lastOctets int64
	lastAt     time.Time
	egressKbps atomic.Int64
}

// RelayService is the edge's MediaRelayService.
func (s *Server) RelayService() mediav1.MediaRelayServiceServer { return relayService{s: s} }

type relayService struct {
	mediav1.UnimplementedMediaRelayServiceServer
	s *Server
}

func (s *Server) relayFanout() int {
	if s.cfg.RelayFanout > 0 {
		return s.cfg.RelayFanout
	}
	return DefaultRelayFanout
}

func (s *Server) relayLinger() time.Duration {
	if s.cfg.RelayLinger > 0 {
		return s.cfg.RelayLinger
	}
	return DefaultRelayLinger
}

// Relay serves a pulling edge.
func (r relayService) Relay(st mediav1.MediaRelayService_RelayServer) error {
	s := r.s
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
	key := streamKey{open.GetAppId(), open.GetStreamId()}
	o, err := s.relaySource(ctx, key)
	if err != nil {
		return err
	}
	out := &relayOut{o: o, edgeID: open.GetEdgeId(), edgeAddr: open.GetEdgeAddr(), kick: make(chan struct{}, 1),
		ids: map[*uptrack]uint32{}, byID: map[uint32]*uptrack{}}
	out.sub = &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{})}
	if next, ok := o.addDown(out, s.relayFanout()); !ok {
		if next == "" {
			return errcode.Newf(errcode.StreamNotFound, "stream %q ended", key.stream)
		}
		return st.Send(&mediav1.RelayDownstream{RedirectAddr: next})
	}
	s.relay.downstreams.Add(1)
	defer func() {
		s.relay.downstreams.Add(-1)
		o.removeDown(out)
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
					u.requestKeyframe(false)
				}
			}
		}
	}()
	return out.run(ctx, st, &s.relay)
}

// relaySource is the stream as this edge has it: published here, or pulled
// (waiting for a new pull's tracks).
func (s *Server) relaySource(ctx context.Context, key streamKey) (*origin, error) {
	s.mu.Lock()
	o := s.origins[key]
	s.mu.Unlock()
	if o != nil {
		return o, nil
	}
	s.relay.mu.Lock()
	p := s.relay.pulls[key]
	s.relay.mu.Unlock()
	if p == nil {
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q is not on this edge", key.stream)
	}
	p.touch()
	return p.wait(ctx)
}

// addDown adds a downstream edge, unless this edge already feeds fanout
// others: then next is one of them to ask instead.
func (o *origin) addDown(out *relayOut, fanout int) (next string, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return "", false
	}
	n := 0
	var pick *relayOut
	for d := range o.downs {
		if d.edgeID == out.edgeID {
			continue // a pull of that edge being replaced
		}
		n++
		if d.edgeAddr != "" && (pick == nil || d.picked < pick.picked) {
			pick = d
		}
	}
	if n >= fanout && pick != nil {
		pick.picked++
		return pick.edgeAddr, false
	}
	if o.downs == nil {
		o.downs = map[*relayOut]struct{}{}
	}
	o.downs[out] = struct{}{}
	if o.pull != nil {
		o.pull.touch()
	}
	return "", true
}

func (o *origin) removeDown(out *relayOut) {
	o.mu.Lock()
	delete(o.downs, out)
	pull := o.pull
	o.mu.Unlock()
	out.unsubscribeAll()
	if pull != nil {
		pull.idle()
	}
}

// kickDowns wakes the downstream edges (the source changed or ended);
// o.mu is held.
func (o *origin) kickDowns() {
	for d := range o.downs {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

func (o *origin) isEnded() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ended
}

func (o *origin) counts() (players, downs int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.players), len(o.downs)
}

// relayOut feeds one downstream edge: its own cursor in each track's
// shared cache, like a player's downtrack, but the packets go out as they
// are cached.
type relayOut struct {
	o                *origin
	edgeID, edgeAddr string
	sub              *subscriber // wakeups only
	kick             chan struct{}
	picked           int // times handed out as a redirect (o.mu)

	mu   sync.Mutex
	ids  map[*uptrack]uint32
	byID map[uint32]*uptrack
	next uint32
	cur  []*uptrack
}

func (r *relayOut) track(id uint32) *uptrack {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

func (r *relayOut) unsubscribeAll() {
	r.mu.Lock()
	cur := r.cur
	r.cur = nil
	r.mu.Unlock()
	for _, u := range cur {
		u.unsubscribe(r.sub)
	}
}

func sameTracks(a, b []*uptrack) bool {
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

func (r *relayOut) run(ctx context.Context, st mediav1.MediaRelayService_RelayServer, rs *relayState) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var cursors []uint64
	buf := make([]byte, maxPayload+100)
	for {
		if r.o.isEnded() {
			if r.o.s.closedLocked() {
				// The edge is going away, not the stream: the
				// downstream edge pulls again elsewhere.
				return errcode.New(errcode.ServiceUnavailable, "the media edge shut down")
			}
			return st.Send(&mediav1.RelayDownstream{Ended: true})
		}
		tracks := r.o.currentTracks()
		r.mu.Lock()
		changed := !sameTracks(r.cur, tracks)
		var old []*uptrack
		var msg *mediav1.RelayDownstream
		if changed {
			old, r.cur = r.cur, tracks
			clear(r.ids)
			clear(r.byID)
			msg = &mediav1.RelayDownstream{}
			for _, u := range tracks {
				r.next++
				r.ids[u], r.byID[r.next] = r.next, u
				c := u.getCodec()
				msg.Tracks = append(msg.Tracks, &mediav1.RelayTrack{Id: r.next, Kind: u.kind.String(), MimeType: c.MimeType,
					ClockRate: c.ClockRate, Channels: uint32(c.Channels), SdpFmtpLine: c.SDPFmtpLine, PayloadType: uint32(c.PayloadType),
					Rid: u.rid, Group: groupNumber(tracks, u)})
			}
		}
		ids := make([]uint32, len(tracks))
		for i, u := range tracks {
			ids[i] = r.ids[u]
		}
		r.mu.Unlock()
		if changed {
			for _, u := range old {
				u.unsubscribe(r.sub)
			}
			for _, u := range tracks {
				u.subscribe(r.sub)
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
			rs.outPackets.Add(int64(len(batch)))
			rs.outOctets.Add(int64(octets))
			err := st.Send(&mediav1.RelayDownstream{Packets: batch})
			batch, octets = nil, 0
			return err
		}
		for i, u := range tracks {
			c := u.cache
			head := c.head.Load()
			if head == 0 {
				continue
			}
			video := u.kind == webrtc.RTPCodecTypeVideo
			if cursors[i] == 0 {
				if !video {
					cursors[i] = head - 1
				} else if ks, _, ok := c.keyframeGroup(); ok {
					cursors[i] = ks
				} else {
					u.requestKeyframe(true)
					continue
				}
			}
			if head > cursors[i]+relayMaxLag {
				target := head - 1
				if ks, _, ok := c.keyframeGroup(); video && ok && ks > cursors[i] {
					target = ks
				} else if video {
					u.requestKeyframe(false)
				}
				cursors[i] = target
			}
			for cursors[i] < head {
				ext := cursors[i]
				cursors[i]++
				p, ok := c.get(ext, buf, now, false)
				if !ok {
					continue
				}
				batch = append(batch, &mediav1.RelayPacket{Track: ids[i], Seq: ext, Timestamp: p.ts, PayloadType: uint32(p.pt),
					Marker: p.marker, Payload: append([]byte(nil), buf[:p.n]...)})
				octets += p.n
				if len(batch) >= relayBatch {
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
		case <-r.sub.wake:
		case <-r.kick:
		case <-t.C:
		}
	}
}

// relayPull is this edge pulling a stream from an upstream edge: the local
// origin o (players, downstream edges) fed from the upstream connection.
type relayPull struct {
	s   *Server
	key streamKey
	o   *origin

	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{}
	done   chan struct{}

	readyOnce, doneOnce sync.Once
	pli                 chan uint32
	// moved: the registry named another origin while pulling.
	moved atomic.Bool

	mu       sync.Mutex
	upstream string // the edge pulled from now
	tracks   map[uint32]*relayIn
	linger   *time.Timer
	// originEdge is the origin the registry named for the current pull.
	originEdge string
	pulls      int // upstream connections made (for tests)
}

// relayIn is one pulled track and its keyframe detection.
type relayIn struct {
	u  *uptrack
	in ingest
}

// relayOrigin is the local origin of a stream this edge relays, pulling it
// if it does not already: it returns once the stream's tracks are known.
func (s *Server) relayOrigin(ctx context.Context, st *streamv1.StreamRecord) (*origin, error) {
	key := streamKey{st.GetAppId(), st.GetStreamId()}
	s.relay.mu.Lock()
	if s.closedLocked() {
		s.relay.mu.Unlock()
		return nil, errcode.New(errcode.ServiceUnavailable, "the media edge is shutting down")
	}
	if s.relay.pulls == nil {
		s.relay.pulls = map[streamKey]*relayPull{}
	}
	p := s.relay.pulls[key]
	if p == nil {
		p = &relayPull{s: s, key: key, ready: make(chan struct{}), done: make(chan struct{}), pli: make(chan uint32, 16),
			tracks: map[uint32]*relayIn{}}
		p.o = newOrigin(s, key, st.GetRoomId(), st.GetUserId())
		p.o.pull = p
		p.ctx, p.cancel = context.WithCancel(context.Background())
		s.relay.pulls[key] = p
		go p.run()
	}
	s.relay.mu.Unlock()
	p.touch()
	return p.wait(ctx)
}

func (s *Server) closedLocked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (p *relayPull) wait(ctx context.Context) (*origin, error) {
	t := time.NewTimer(relayReadyTimeout)
	defer t.Stop()
	select {
	case <-p.ready:
		if p.o.isEnded() {
			return nil, errcode.Newf(errcode.StreamNotFound, "stream %q ended", p.key.stream)
		}
		return p.o, nil
	case <-p.done:
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q is not live", p.key.stream)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errcode.Newf(errcode.ServiceUnavailable, "stream %q could not be pulled from its origin", p.key.stream)
	}
}

// touch (re)starts the linger: a pull with no player and no downstream
// edge when it fires ends.
func (p *relayPull) touch() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.linger == nil {
		p.linger = time.AfterFunc(p.s.relayLinger(), p.lingerDone)
		return
	}
	p.linger.Reset(p.s.relayLinger())
}

// idle: a player or downstream edge left; the linger starts if it was the
// last.
func (p *relayPull) idle() {
	if pl, d := p.o.counts(); pl == 0 && d == 0 {
		p.touch()
	}
}

func (p *relayPull) lingerDone() {
	if pl, d := p.o.counts(); pl > 0 || d > 0 {
		return
	}
	p.end(streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED)
}

// end stops pulling and ends the local stream: its players are told the
// stream ended.
func (p *relayPull) end(reason streamv1.DeleteReason) {
	p.s.relay.mu.Lock()
	if p.s.relay.pulls[p.key] == p {
		delete(p.s.relay.pulls, p.key)
	}
	p.s.relay.mu.Unlock()
	p.cancel()
	p.mu.Lock()
	if p.linger != nil {
		p.linger.Stop()
	}
	p.mu.Unlock()
	p.o.end(reason)
	p.doneOnce.Do(func() { close(p.done) })
}

// fail ends the pull with its players failed (they retry), not told the
// stream ended.
func (p *relayPull) fail() {
	p.o.mu.Lock()
	players := make([]*session, 0, len(p.o.players))
	for ss := range p.o.players {
		players = append(players, ss)
	}
	p.o.mu.Unlock()
	for _, ss := range players {
		ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ServiceUnavailable), "the stream's upstream edge was lost")
	}
	p.end(streamv1.DeleteReason_DELETE_REASON_DISCONNECTED)
}

// Upstream is the edge a pulled stream comes from ("" if this edge does
// not pull it), and how many upstream connections the pull has made.
func (s *Server) Upstream(appID uint32, streamID string) (addr string, pulls int) {
	s.relay.mu.Lock()
	p := s.relay.pulls[streamKey{appID, streamID}]
	s.relay.mu.Unlock()
	if p == nil {
		return "", 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstream, p.pulls
}

// Downstreams is how many edges pull the stream from this one.
func (s *Server) Downstreams(appID uint32, streamID string) int {
	key := streamKey{appID, streamID}
	s.mu.Lock()
	o := s.origins[key]
	s.mu.Unlock()
	if o == nil {
		s.relay.mu.Lock()
		if p := s.relay.pulls[key]; p != nil {
			o = p.o
		}
		s.relay.mu.Unlock()
	}
	if o == nil {
		return 0
	}
	_, d := o.counts()
	return d
}

func (p *relayPull) run() {
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
		st, gerr := p.s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: p.key.app, StreamId: p.key.stream})
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
		} else if time.Since(failing) > relayGiveUp {
			p.s.log.Warn("media: relay gives up", "stream", p.key.stream, "err", err)
			p.fail()
			return
		}
		p.s.relay.repulls.Add(1)
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

// relayConn is a connection to another edge, with the internal key.
func (s *Server) relayConn(addr string) (*grpc.ClientConn, error) {
	s.relay.mu.Lock()
	defer s.relay.mu.Unlock()
	if cc := s.relay.conns[addr]; cc != nil {
		return cc, nil
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, s.cfg.RelayDialOptions...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	if s.relay.conns == nil {
		s.relay.conns = map[string]*grpc.ClientConn{}
	}
	s.relay.conns[addr] = cc
	return cc, nil
}

// pullOnce pulls from the origin the registry names (or the edge it
// redirects to) until the upstream breaks or ends. got: tracks arrived.
func (p *relayPull) pullOnce() (got, ended bool, err error) {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	st, err := p.s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: p.key.app, StreamId: p.key.stream})
	cancel()
	if err != nil {
		return false, false, err
	}
	p.mu.Lock()
	p.originEdge = st.GetStream().GetEdgeId()
	p.mu.Unlock()
	addr := st.GetStream().GetEdgeAddr()
	for hop := 0; hop < 8; hop++ {
		if addr == p.s.cfg.EdgeAddr && st.GetStream().GetEdgeId() != p.s.cfg.EdgeID {
			return false, false, errcode.New(errcode.ServiceUnavailable, "relay redirected to itself")
		}
		cc, err := p.s.relayConn(addr)
		if err != nil {
			return false, false, err
		}
		sctx, scancel := context.WithCancel(p.ctx)
		stream, err := mediav1.NewMediaRelayServiceClient(cc).Relay(sctx)
		if err == nil {
			err = stream.Send(&mediav1.RelayUpstream{Open: &mediav1.RelayOpen{AppId: p.key.app, StreamId: p.key.stream,
				EdgeId: p.s.cfg.EdgeID, EdgeAddr: p.s.cfg.EdgeAddr}})
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
		// The publisher moving to another edge: pull from there at once
		// (relaymove.go).
		go p.watchMove(sctx, originEdge, func() {
			p.moved.Store(true)
			p.s.relay.moves.Add(1)
			scancel()
		})
		go func() {
			for {
				select {
				case <-sctx.Done():
					return
				case id := <-p.pli:
					if stream.Send(&mediav1.RelayUpstream{Keyframe: []uint32{id}}) != nil {
						return
					}
				}
			}
		}()
		defer scancel()
		for {
			if len(m.GetTracks()) > 0 {
				p.setTracks(m.GetTracks())
				got = true
			}
			p.ingest(m.GetPackets())
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

// setTracks makes the upstream's (new) tracks the local stream's source:
// players splice them in at their first keyframe.
func (p *relayPull) setTracks(ts []*mediav1.RelayTrack) {
	var list []*uptrack
	in := map[uint32]*relayIn{}
	groups := map[uint32]*layerGroup{}
	for _, t := range ts {
		kind := webrtc.NewRTPCodecType(t.GetKind())
		c := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: t.GetMimeType(),
			ClockRate: t.GetClockRate(), Channels: uint16(t.GetChannels()), SDPFmtpLine: t.GetSdpFmtpLine()},
			PayloadType: webrtc.PayloadType(t.GetPayloadType())}
		u := newUptrack(nil, kind, c, p.s.cfg.PLIInterval)
		if g := groups[t.GetGroup()]; g != nil {
			u.group = g
		} else {
			groups[t.GetGroup()] = u.group
		}
		u.rid = t.GetRid()
		id := t.GetId()
		u.ssrc.Store(id | 1<<31)
		u.pli = func() {
			select {
			case p.pli <- id:
			default:
			}
		}
		list = append(list, u)
		in[id] = &relayIn{u: u}
	}
	p.mu.Lock()
	p.tracks = in
	p.mu.Unlock()
	p.o.adopt(nil, list)
	p.readyOnce.Do(func() { close(p.ready) })
}

// ingest files upstream packets in their tracks' caches, as uptrack.run
// does with a publisher's, and wakes the tracks' subscribers.
func (p *relayPull) ingest(pkts []*mediav1.RelayPacket) {
	if len(pkts) == 0 {
		return
	}
	p.mu.Lock()
	tracks := p.tracks
	p.mu.Unlock()
	now := time.Now().UnixNano()
	touched := map[*uptrack]struct{}{}
	for _, pk := range pkts {
		t := tracks[pk.GetTrack()]
		if t == nil || pk.GetSeq() == 0 {
			continue
		}
		u, payload := t.u, pk.GetPayload()
		u.file(&t.in, pk.GetSeq(), now, pk.GetTimestamp(), uint8(pk.GetPayloadType()), pk.GetMarker(), payload)
		p.s.relay.inPackets.Add(1)
		p.s.relay.inOctets.Add(int64(len(payload)))
		touched[u] = struct{}{}
	}
	for u := range touched {
		u.wake()
	}
}

// closeRelays ends every pull (the edge is closing) and the connections.
func (s *Server) closeRelays() {
	s.relay.mu.Lock()
	var pulls []*relayPull
	for _, p := range s.relay.pulls {
		pulls = append(pulls, p)
	}
	conns := s.relay.conns
	s.relay.conns = nil
	s.relay.mu.Unlock()
	for _, p := range pulls {
		p.end(streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED)
	}
	for _, cc := range conns {
		_ = cc.Close()
	}
}

// relayUpstreams is how many streams this edge pulls.
func (s *Server) relayUpstreams() int {
	s.relay.mu.Lock()
	defer s.relay.mu.Unlock()
	return len(s.relay.pulls)
}

// groupNumber numbers u's layer group among tracks (its first track's
// index), so a relay edge puts the same layers together.
func groupNumber(tracks []*uptrack, u *uptrack) uint32 {
	for i, x := range tracks {
		if x.group == u.group {
			return uint32(i)
		}
	}
	return 0
}
