// Package placement decides which media edge a publisher or a player goes
// to. It is the one place that does: the gateway (WHIP, WHEP, the REST
// publish and play) and the edges (an SDK's play that reaches an edge
// which is not the chosen one) call Choose, and the edge chosen serves the
// session without choosing again.
//
// It lives under internal/ rather than services/media because the gateway
// uses it too and must not import the edge (pion and the SFU).
//
// The rule (Choose):
//   - An edge's load is its players, plus one per Mbit/s of egress (to
//     players and to edges it relays to), plus the sessions this chooser
//     sent it lately (metadata is refreshed every few seconds, so a burst
//     of players would otherwise all go to the edge that looked empty).
//   - A player goes to the least loaded edge, except that an edge that
//     publishes streams (an origin: it spends its CPU on ingest and on
//     feeding relay edges) takes players only while its load is under
//     the room it advertises (Meta.OriginRoom), unless every edge is such
//     an origin.
//   - A publisher goes to the least loaded edge.
//   - Ties go to the lower address, so that choices are reproducible.
//
// The chooser does not know which edge is a given stream's origin (that
// takes a registry lookup, which the edge chosen makes once, for the
// play): a player placed on an edge that is not its stream's origin is
// served there, the edge pulling the stream (services/media/relay).
package placement

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/discovery"
)

// Meta is what a media edge advertises in its discovery metadata.
type Meta struct {
	// SessionTag starts the ID of every session of the edge
	// (internal/mediasession), so that a session's calls reach its edge.
	SessionTag string `json:"session_tag,omitempty"`
	// Publishers is the streams published on the edge; Players its player
	// sessions.
	Publishers int `json:"publishers"`
	Players    int `json:"players"`
	// EgressKbps is the edge's egress bitrate, to players and to the edges
	// it relays to, over the last metadata period.
	EgressKbps int `json:"egress_kbps"`
	// RelayUpstreams is the streams the edge pulls from other edges;
	// RelayDownstreams the edges it feeds.
	RelayUpstreams   int `json:"relay_upstreams"`
	RelayDownstreams int `json:"relay_downstreams"`
	// OriginRoom is the load under which the edge takes players while it
	// publishes streams (0: none).
	OriginRoom int `json:"origin_room,omitempty"`
}

// Load is the edge's load by the package's rule: players, plus one per
// Mbit/s of egress.
func (m Meta) Load() float64 { return float64(m.Players) + float64(m.EgressKbps)/1000 }

// Edge is a registered media edge: its gRPC address and its metadata.
type Edge struct {
	Addr string
	Meta Meta
}

// FromInstances turns discovery's listing (address: metadata as decoded
// JSON) into edges, sorted by address. Metadata that does not decode
// leaves the edge with a zero Meta (an edge that advertises nothing).
func FromInstances(inst map[string]any) []Edge {
	out := make([]Edge, 0, len(inst))
	for addr, raw := range inst {
		e := Edge{Addr: addr}
		if raw != nil {
			if b, err := json.Marshal(raw); err == nil {
				_ = json.Unmarshal(b, &e.Meta)
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// List reads the registered media edges from discovery.
func List(ctx context.Context, cli *clientv3.Client) ([]Edge, error) {
	inst, err := discovery.Instances(ctx, cli, discovery.Media)
	if err != nil {
		return nil, err
	}
	return FromInstances(inst), nil
}

// Kind is what is placed.
type Kind int

// Kinds.
const (
	Player Kind = iota
	Publisher
)

// Choose returns the address of the edge for a session of kind by the
// package's rule, "" when there is no edge. recent counts the sessions
// the caller sent to each edge lately (nil: none).
func Choose(edges []Edge, kind Kind, recent map[string]int) string {
	best, bestLoad := "", 0.0
	pick := func(skipFullOrigins bool) {
		for _, e := range edges {
			load := e.Meta.Load() + float64(recent[e.Addr])
			if skipFullOrigins && e.Meta.Publishers > 0 && load >= float64(e.Meta.OriginRoom) {
				continue
			}
			if best == "" || load < bestLoad || (load == bestLoad && e.Addr < best) {
				best, bestLoad = e.Addr, load
			}
		}
	}
	pick(kind == Player)
	if best == "" {
		pick(false) // every edge is an origin without room: least loaded
	}
	return best
}

// window is how long a placement counts toward its edge's load: a bit
// more than the edges' metadata refresh (5 s).
const window = 6 * time.Second

// Chooser is Choose with the caller's recent placements remembered. The
// zero value is ready to use; it is safe for concurrent use.
type Chooser struct {
	mu     sync.Mutex
	placed map[string][]time.Time // by edge address, oldest first
}

// Choose places a session of kind on one of edges and remembers it.
func (c *Chooser) Choose(edges []Edge, kind Kind) string {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	recent := make(map[string]int, len(c.placed))
	for addr, ts := range c.placed {
		i := 0
		for i < len(ts) && now.Sub(ts[i]) >= window {
			i++
		}
		if ts = ts[i:]; len(ts) == 0 {
			delete(c.placed, addr)
			continue
		}
		c.placed[addr] = ts
		recent[addr] = len(ts)
	}
	best := Choose(edges, kind, recent)
	if best != "" {
		if c.placed == nil {
			c.placed = map[string][]time.Time{}
		}
		c.placed[best] = append(c.placed[best], now)
	}
	return best
}
