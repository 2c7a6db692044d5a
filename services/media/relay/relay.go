// Package relay is the edge-to-edge relay: one stream's audience spread
// over many edges.
//
// A stream has one origin edge, where it is published. A player in
// ResourceMode Default or OnlyL3 plays at the edge chosen for it (package
// media, edgechoice.go); when that edge is not the origin, it pulls the
// stream once from an upstream edge, however many local players it has,
// and serves them with the same downtracks and keyframe cache as the
// origin: the edge's local Stream is the same, its source is the upstream
// connection rather than a publisher, so a relay player's first frame is a
// cached keyframe too, and a new upstream is spliced into its players like
// a publisher that came back.
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
//
// Where a change goes: relay.go (this file) holds the Relay, its
// configuration and what it needs of its edge (Edge, Stream); serve.go the
// serving side (the MediaRelayService RPC, Feed: one downstream edge);
// downstreams.go a stream's downstream edges and the fan-out; pull.go the
// pulling side (Pull: its lifecycle, the upstream connection, ingest);
// layers.go which simulcast layers a pulling edge receives (those its
// players and downstream edges forward);
// move.go following a publisher that moved; pool.go the connections to
// other edges. Edge choice (which edge a player plays at) is the edge's
// (package media); the SFU work (caching, forwarding) is package sfu's.
package relay

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/sfu"
)

// Relay defaults.
const (
	DefaultFanout = 8
	DefaultLinger = 10 * time.Second
	// readyTimeout bounds how long a Play waits for a new pull's tracks.
	readyTimeout = 8 * time.Second
	// giveUp: a pull that cannot reach any upstream for this long, while
	// the registry still names the stream, ends.
	giveUp = 15 * time.Second
	// maxLag: a downstream edge further behind than this many packets of a
	// track skips ahead.
	maxLag = 2048
	// batchPackets bounds the packets of one message.
	batchPackets = 64
)

// StreamKey names a stream: its app and stream ID.
type StreamKey struct {
	App    uint32
	Stream string
}

// Config is what a relay needs.
type Config struct {
	// Streams is the stream registry: where a pulled stream is published.
	Streams streamv1.StreamServiceClient
	// EdgeID and EdgeAddr are this edge's, as in the registry.
	EdgeID, EdgeAddr string
	// Fanout: edges fed directly (DefaultFanout if zero); Linger: how long
	// a pulled stream outlives its last local player (DefaultLinger if
	// zero); DialOptions: how to reach another edge (the internal key,
	// TLS).
	Fanout      int
	Linger      time.Duration
	DialOptions []grpc.DialOption
	// PLIInterval throttles keyframe requests sent upstream.
	PLIInterval time.Duration
	Logger      *slog.Logger
}

// Edge is what the relay needs of its edge.
type Edge interface {
	// Published is the stream published on this edge under key, nil if
	// none.
	Published(key StreamKey) Stream
	// NewStream is a new local stream that pull feeds, for key's players
	// and downstream edges here.
	NewStream(key StreamKey, roomID, userID string, pull *Pull) Stream
	// Closing reports whether the edge is shutting down.
	Closing() bool
}

// Stream is a stream as an edge holds it, published there or pulled: the
// serving side feeds its tracks to downstream edges, and a pull replaces
// its tracks with the upstream's. The edge's lock guards its downstream
// edges (AddDown, RemoveDown; a Downstreams).
type Stream interface {
	// Tracks are the stream's current tracks.
	Tracks() []*sfu.UpTrack
	// Ended reports whether the stream has ended.
	Ended() bool
	// Counts are its local players and downstream edges.
	Counts() (players, downs int)
	// AddDown adds a downstream edge's feed (Downstreams.Add), unless the
	// stream has ended.
	AddDown(f *Feed, fanout int) (next string, ok bool)
	// RemoveDown forgets a downstream edge's feed.
	RemoveDown(f *Feed)
	// Adopt makes tracks the stream's source; players splice them in at
	// their first keyframe. False if the stream has ended.
	Adopt(tracks []*sfu.UpTrack) bool
	// End ends the stream here, its players told it ended.
	End(reason streamv1.DeleteReason)
	// FailPlayers fails its players (they retry): the upstream is lost.
	FailPlayers()
}

// Counters are the relay's figures: RTP packets and payload bytes sent to
// downstream edges and received from upstreams; Downstreams, edges pulling
// a stream from this one now; Repulls, upstream connections lost or
// dropped and pulled again; Moves, of those, the stream moved to another
// origin (move.go). Metrics read them when scraped.
type Counters struct {
	OutPackets, OutOctets atomic.Int64
	InPackets, InOctets   atomic.Int64
	Downstreams           atomic.Int64
	Repulls, Moves        atomic.Int64
}

// Relay is an edge's relay: the streams it pulls, the edges it feeds, its
// connections to other edges.
type Relay struct {
	cfg  Config
	edge Edge
	pool pool

	mu    sync.Mutex
	pulls map[StreamKey]*Pull

	// Counters are read by the edge's metrics and load.
	Counters Counters
}

// New is an edge's relay.
func New(cfg Config, edge Edge) *Relay {
	if cfg.Fanout <= 0 {
		cfg.Fanout = DefaultFanout
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Relay{cfg: cfg, edge: edge, pool: pool{opts: cfg.DialOptions}, pulls: map[StreamKey]*Pull{}}
}

// Upstream is the edge a pulled stream comes from ("" if this edge does
// not pull it), and how many upstream connections the pull has made.
func (r *Relay) Upstream(key StreamKey) (addr string, pulls int) {
	r.mu.Lock()
	p := r.pulls[key]
	r.mu.Unlock()
	if p == nil {
		return "", 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstream, p.pulls
}

// Pulled is the local stream of a stream this edge pulls, nil if none.
func (r *Relay) Pulled(key StreamKey) Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pulls[key]; p != nil {
		return p.o
	}
	return nil
}

// Upstreams is how many streams this edge pulls.
func (r *Relay) Upstreams() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pulls)
}

// Close ends every pull (the edge is closing) and the connections.
func (r *Relay) Close() {
	r.mu.Lock()
	var pulls []*Pull
	for _, p := range r.pulls {
		pulls = append(pulls, p)
	}
	r.mu.Unlock()
	for _, p := range pulls {
		p.end(streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED)
	}
	r.pool.close()
}

// waitFor is the local stream of a stream this edge pulls, once its tracks
// are known; nil, nil if it does not pull it.
func (r *Relay) waitFor(ctx context.Context, key StreamKey) (Stream, error) {
	r.mu.Lock()
	p := r.pulls[key]
	r.mu.Unlock()
	if p == nil {
		return nil, nil
	}
	p.Touch()
	return p.wait(ctx)
}
