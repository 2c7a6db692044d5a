package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/bench/netshape"
	"github.com/onair-dev/onair/bench/viewer"
)

// startShaper returns the tc shaper when a player's link has a rate cap,
// or nil.
func startShaper(ctx context.Context, c fanoutConfig) (*netshape.Shaper, error) {
	capped := false
	for _, l := range c.shapes {
		capped = capped || l.Capped()
	}
	if !capped {
		return nil, nil
	}
	s, err := netshape.NewShaper(ctx)
	if err != nil {
		return nil, fmt.Errorf("--shape with a rate cap: %w (scripts/bench-shaped.sh runs the bench in one)", err)
	}
	return s, nil
}

// shapedPlayer gives player i its link (the shapes in turn), its socket
// on the pinned port with the link's delay and loss, the link's starting
// rate cap, and a WebRTC API on that socket.
func shapedPlayer(ctx context.Context, c fanoutConfig, s *netshape.Shaper, i int) (netshape.Link, *netshape.Net, *webrtc.API, error) {
	l := c.shapes[i%len(c.shapes)]
	port := c.portBase + i
	n, err := netshape.NewNet(port, l, uint64(i+1))
	if err != nil {
		return l, nil, nil, err
	}
	if s != nil && l.Capped() {
		if err := s.SetRate(ctx, port, l.Rate[0].Bps); err != nil {
			return l, nil, nil, err
		}
	}
	api, err := benchAPI(c.whep, true, n, true)
	return l, n, api, err
}

// withLayer adds the WHEP layer request to target.
func withLayer(target, layer string) string {
	if layer == "" {
		return target
	}
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	q := u.Query()
	q.Set("layer", layer)
	u.RawQuery = q.Encode()
	return u.String()
}

// viewerResult is what one player's viewer saw.
type viewerResult struct {
	name    string
	link    string
	report  viewer.Report
	layers  []viewer.LayerChange
	dropped int64 // datagrams the link's random loss dropped
}

func viewerResults(players []*fanoutPlayer, end time.Time) []viewerResult {
	var out []viewerResult
	players = slices.Clone(players)
	slices.SortFunc(players, func(a, b *fanoutPlayer) int { return a.n - b.n })
	for _, p := range players {
		v := viewerResult{name: p.name, link: p.link.String(), report: p.meter.Report(end), layers: p.meter.Layers()}
		if p.net != nil {
			v.dropped = p.net.Stats().Dropped
		}
		out = append(out, v)
	}
	return out
}

// maxViewerRows is how many players get a row of their own; beyond it only
// the aggregates per link are printed.
const maxViewerRows = 24

// printViewers prints the viewer table: a row per player (up to
// maxViewerRows), one per link, and one for all; then the layer changes of
// players whose picture size changed.
func (r *fanoutResult) printViewers(w io.Writer, c fanoutConfig) error {
	if len(r.viewers) == 0 {
		return nil
	}
	var rows []viewer.Row
	byLink := map[string][]viewer.Report{}
	var links []string
	var all []viewer.Report
	for _, v := range r.viewers {
		if len(r.viewers) <= maxViewerRows {
			rows = append(rows, viewer.Row{Name: v.name, Link: v.link, Report: v.report})
		}
		if _, ok := byLink[v.link]; !ok {
			links = append(links, v.link)
		}
		byLink[v.link] = append(byLink[v.link], v.report)
		all = append(all, v.report)
	}
	if len(links) > 1 {
		for _, l := range links {
			rows = append(rows, viewer.Row{Name: fmt.Sprintf("%d players", len(byLink[l])), Link: l, Report: viewer.Aggregate(byLink[l])})
		}
	}
	rows = append(rows, viewer.Row{Name: "all", Link: strings.Join(links, " | "), Report: viewer.Aggregate(all)})
	fmt.Fprintf(w, "\nwhat the viewers saw (%v window after %v warm-up; frames complete with their reference chain, freezes as WebRTC stats count them):\n",
		r.wall.Round(time.Second), c.warmup)
	if err := viewer.WriteTable(w, rows); err != nil {
		return err
	}
	for _, v := range r.viewers {
		if len(v.layers) > 1 || v.dropped > 0 && len(r.viewers) <= maxViewerRows {
			var b strings.Builder
			for _, l := range v.layers {
				fmt.Fprintf(&b, " %dx%d@%v", l.Width, l.Height, l.At.Round(100*time.Millisecond))
			}
			fmt.Fprintf(w, "%s (%s): layers%s; %d datagrams dropped by the link's loss\n", v.name, v.link, b.String(), v.dropped)
		}
	}
	return nil
}
