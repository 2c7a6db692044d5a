package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/services/media/bwe"
)

// Player is one player's forwarding unit: its downtracks, fed by the
// edge's forwarding pool. Publisher tracks only wake it; everything per player
// (reading the shared cache, rewriting, encrypting, writing) runs on a pool
// worker, so players spread over all cores and a slow one holds up nobody
// else. A relay's feed of a downstream edge uses a Player without pool or
// downtracks for its wakeups (NewDownstream).
type Player struct {
	pc     *webrtc.PeerConnection
	pool   *ForwardPool
	egress *atomic.Int64
	delays *DelayHist // the server's edge delay
	tracks []*downTrack
	wake   chan struct{} // a relay's sender loop (no pool) reads it
	done   chan struct{}
	active atomic.Bool // connected: forwarding may start
	pace   *time.Timer
	once   sync.Once

	state     atomic.Int32 // in the pool: stateIdle, ...
	reports   *time.Timer
	reportDue atomic.Bool

	// delay (tests only) makes every packet written to this player slow.
	delay atomic.Int64

	// Congestion control (congestion.go): the player's bandwidth estimate,
	// the transport-wide sequence numbers of its packets and the
	// retransmission and probe budgets (owned by its turn).
	est         *bwe.Estimator
	twSeq       uint16
	rtxBkt      tokenBucket
	probeAt     int64   // when probe padding was last sent
	probeCredit float64 // bytes of probe padding due
	// onLayer, if set, is told when the video layer or pause changes.
	onLayer func(l Layer, paused bool)
}

// NewPlayer is a player's forwarding, run on pool, counting its packets
// into egress and its delays into delays. Its peer connection is made by
// PlayerPeers.NewPeerConnection.
func NewPlayer(pc *webrtc.PeerConnection, pool *ForwardPool, egress *atomic.Int64, delays *DelayHist) *Player {
	s := &Player{pc: pc, pool: pool, egress: egress, delays: delays, done: make(chan struct{}),
		est: bwe.New(bwe.Config{Initial: initialEstimate, Min: minEstimate, Max: maxEstimate})}
	s.pace = time.AfterFunc(time.Hour, s.Signal)
	s.pace.Stop()
	s.reports = time.AfterFunc(time.Hour, s.reportTick)
	s.reports.Stop()
	return s
}

// Signal has the Player look for work.
func (s *Player) Signal() {
	if s.pool != nil {
		s.schedule()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Player) stop() {
	s.once.Do(func() {
		close(s.done)
		s.pace.Stop()
		s.reports.Stop()
	})
}

// senderReportEvery is how often a player gets RTCP sender reports, which
// its receiver reports answer (giving the edge loss, jitter and RTT).
const senderReportEvery = time.Second

// Start begins the player's sender reports; packets flow from its first
// wake once it is active.
func (s *Player) Start() {
	s.reports.Reset(senderReportEvery)
	s.Signal()
}

// reportTick has the next turn send sender reports. A tick racing stop
// may arm the timer once more; that tick finds the player done.
func (s *Player) reportTick() {
	select {
	case <-s.done:
		return
	default:
	}
	s.reportDue.Store(true)
	s.Signal()
	s.reports.Reset(senderReportEvery)
}

// forward sends what every downtrack has due.
func (s *Player) forward() {
	if !s.active.Load() {
		return
	}
	now := time.Now().UnixNano()
	more, sent := false, 0
	for _, d := range s.tracks {
		m, n := d.pump(now)
		more = more || m
		sent += n
	}
	if sent > 0 {
		end := time.Now().UnixNano()
		for _, d := range s.tracks {
			if d.oldestLive != 0 {
				s.delays.observe(time.Duration(end - d.oldestLive))
				d.oldestLive = 0
			}
		}
		s.egress.Add(int64(sent))
	}
	if s.probe(now) {
		more = true
	}
	if more {
		s.pace.Reset(replayPace)
	}
}

func (s *Player) senderReports() {
	now := time.Now()
	var pkts []rtcp.Packet
	for _, d := range s.tracks {
		if sr := d.senderReport(now); sr != nil {
			pkts = append(pkts, sr)
		}
	}
	if len(pkts) > 0 {
		_ = s.pc.WriteRTCP(pkts)
	}
}

// NewDownstream is a Player that forwards nothing itself: a relay's feed of
// a downstream edge subscribes it to tracks for their wakeups, which the
// feed's own sender loop reads (Wakeups).
func NewDownstream() *Player {
	return &Player{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Wakeups is where a NewDownstream Player's wakeups arrive.
func (s *Player) Wakeups() <-chan struct{} { return s.wake }

// AddTrack gives the player a downtrack of u's kind on its peer
// connection (PlayerPeers.NewPeerConnection's), before the offer is
// answered; SwitchTo gives it its layers. A video downtrack forwards the
// layer pref pins (LayerAuto: the one its bandwidth fits).
func (s *Player) AddTrack(u *UpTrack, streamID string, pref Layer) error {
	d := newDownTrack(s, u, streamID)
	if d.kind == webrtc.RTPCodecTypeVideo {
		d.pref = pref
	}
	// The player's RTCP about d reaches it through rtcpSink (pion.go):
	// nothing reads the sender.
	if _, err := s.pc.AddTrack(d); err != nil {
		return err
	}
	s.tracks = append(s.tracks, d)
	return nil
}

// Connected lets forwarding start (the player's peer connection is up):
// each source is asked for a keyframe at once (the join throttle) and the
// player looks for work.
func (s *Player) Connected() {
	s.active.Store(true)
	for _, d := range s.tracks {
		if u := d.want.Load(); u != nil {
			u.RequestKeyframe(true)
		}
	}
	s.Signal()
}

// SwitchTo makes each downtrack's source the track of its kind among
// tracks (a publisher that came back, a new upstream), with its simulcast
// layers: the downtrack splices the layer it picks in at its first
// keyframe. A kind tracks lack keeps its source. It does not wake the
// player (Signal).
func (s *Player) SwitchTo(tracks []*UpTrack) {
	for _, d := range s.tracks {
		d.setLayers(LayersOf(tracks, d.kind))
	}
}

// OnLayer has f told, from the player's RTCP goroutine, the video layer
// the player gets and whether its video is paused, whenever either
// changes. Set it before the player starts.
func (s *Player) OnLayer(f func(l Layer, paused bool)) { s.onLayer = f }

// Close stops the player's forwarding and unsubscribes it from its
// sources.
func (s *Player) Close() {
	s.stop()
	for _, d := range s.tracks {
		for _, u := range *d.layers.Load() {
			u.Unsubscribe(s)
		}
	}
}

// Octets is how many payload bytes the player was sent (the edge's egress
// bitrate is made of it).
func (s *Player) Octets() int64 {
	var n int64
	for _, d := range s.tracks {
		n += d.octets.Load()
	}
	return n
}

// PlayerStats are a player's counters, summed over its downtracks: packets
// sent, retransmitted, skipped (a player too far behind), NACKs that could
// not be answered, NACKs not answered again for a packet resent often
// enough or just now, and receiver report blocks read.
type PlayerStats struct{ Sent, Retransmits, Drops, NackMisses, NackRepeats, Reports int64 }

// Stats are the player's counters.
func (s *Player) Stats() PlayerStats {
	var st PlayerStats
	for _, d := range s.tracks {
		st.Sent += d.sent.Load()
		st.Retransmits += d.retransmits.Load()
		st.Drops += d.drops.Load()
		st.NackMisses += d.nackMisses.Load()
		st.NackRepeats += d.nackRepeats.Load()
		st.Reports += d.reports.Load()
	}
	return st
}

// DropOutgoingVideo (fault injection for tests) drops the player's
// outgoing live video packets for which drop says so, as a lossy path
// would; retransmissions get through.
func (s *Player) DropOutgoingVideo(drop func(seq uint16) bool) {
	for _, d := range s.tracks {
		if d.kind == webrtc.RTPCodecTypeVideo {
			d.dropOut.Store(&drop)
		}
	}
}

// SlowDown (fault injection for tests) makes every packet written to the
// player take d longer.
func (s *Player) SlowDown(d time.Duration) { s.delay.Store(int64(d)) }
