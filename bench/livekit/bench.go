package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/onair-dev/onair/bench/netshape"
	"github.com/onair-dev/onair/bench/viewer"
)

// result is what one run saw.
type result struct {
	rows []viewer.Row
	// Per player: the layers shown (since joining), the first video
	// packet, the tc queue's counts, the socket's losses and the PLIs sent.
	layers    [][]viewer.LayerChange
	first     []time.Duration
	tcDropped []int64
	tcSent    []int64
	sockDrop  []int64
	keyReqs   []int64
	plis      []int
	// pubFPS is the publisher's frame rate over the window.
	pubFPS float64
	window time.Duration
}

// bench runs one measurement: shaper, publisher, players, warm-up, window.
func bench(ctx context.Context, c config, log *slog.Logger) (*result, error) {
	var shaper *netshape.Shaper
	if c.link.Capped() {
		var err error
		if shaper, err = netshape.NewShaper(ctx); err != nil {
			return nil, err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := shaper.Close(cctx); err != nil {
				log.Warn("remove the tc qdisc", "err", err)
			}
		}()
		// The first step of the cap is on before the player joins; the
		// rest follow the schedule from the measurement's start.
		for i := range c.players {
			if err := shaper.SetRate(ctx, c.port+i, c.link.Rate[0].Bps); err != nil {
				return nil, err
			}
		}
	}
	pub, err := publish(ctx, c, log)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	// The first keyframes reach the server before the players ask.
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	players := make([]*player, c.players)
	defer func() {
		for _, p := range players {
			if p != nil {
				p.Close()
			}
		}
	}()
	errs := make([]error, c.players)
	var wg sync.WaitGroup
	for i := range players {
		wg.Go(func() { players[i], errs[i] = play(ctx, c, i, log) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := sleep(ctx, c.warmup); err != nil {
		return nil, err
	}
	start := time.Now()
	framesAtStart := pub.frames.Load()
	for _, p := range players {
		p.window.Start(start)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if shaper != nil && len(c.link.Rate) > 1 {
		for _, p := range players {
			go func() {
				if err := shaper.Follow(sctx, p.port, c.link.Rate, start); err != nil && sctx.Err() == nil {
					log.Warn("rate schedule", "player", p.name, "err", err)
				}
			}()
		}
	}
	if err := sleep(ctx, c.duration); err != nil {
		return nil, err
	}
	end := time.Now()
	res := &result{window: end.Sub(start), keyReqs: pub.keyframeRequests(),
		pubFPS: float64(pub.frames.Load()-framesAtStart) / end.Sub(start).Seconds()}
	for _, p := range players {
		res.rows = append(res.rows, viewer.Row{Name: p.name, Link: p.link.String(), Report: p.window.Report(end)})
		res.layers = append(res.layers, p.joined.Layers())
		p.mu.Lock()
		res.first = append(res.first, p.firstVideo)
		p.mu.Unlock()
		var sent, dropped, sock int64
		if shaper != nil {
			_, sent, dropped, _ = shaper.Stats(ctx, p.port)
		}
		if p.net != nil {
			sock = p.net.Stats().Dropped
		}
		res.plis = append(res.plis, p.keyframeRequests())
		res.tcSent = append(res.tcSent, sent)
		res.tcDropped = append(res.tcDropped, dropped)
		res.sockDrop = append(res.sockDrop, sock)
	}
	return res, nil
}

func (r *result) print(w io.Writer, c config) error {
	var ls []string
	for _, l := range simulcastLayers(c.bitrate) {
		ls = append(ls, fmt.Sprintf("%dx%d %d kbit/s", l.width, l.height, l.bps/1000))
	}
	gop := "keyframes on request only"
	if c.gop > 0 {
		gop = "a keyframe every " + c.gop.String() + " and on request"
	}
	pli := "never ask for keyframes"
	if c.pliAfter > 0 {
		pli = "ask for a keyframe after " + c.pliAfter.String() + " without a frame"
	}
	fmt.Fprintf(w, "LiveKit at %s: 3 VP8 simulcast layers (%s), %s; %d players asking for %s, they %s\n",
		c.url, strings.Join(ls, ", "), gop, c.players, livekit.VideoQuality_name[int32(c.quality)], pli)
	fmt.Fprintf(w, "link %s, %s after a %s warm-up\n\n", c.link, r.window.Round(100*time.Millisecond), c.warmup)
	reports := make([]viewer.Report, len(r.rows))
	for i, row := range r.rows {
		reports[i] = row.Report
	}
	rows := append(r.rows, viewer.Row{Name: "all", Link: c.link.String(), Report: viewer.Aggregate(reports)})
	if err := viewer.WriteTable(w, rows); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsince joining (the window began at %s; tc: the bottleneck queue over the whole run)\n", c.warmup)
	for i, row := range r.rows {
		var ls []string
		for _, l := range r.layers[i] {
			ls = append(ls, fmt.Sprintf("%dx%d@%s", l.Width, l.Height, l.At.Round(100*time.Millisecond)))
		}
		fmt.Fprintf(w, "  %s  first video packet %s, layers %s, %d PLIs sent, tc sent %d packets and dropped %d, socket dropped %d\n",
			row.Name, r.first[i].Round(time.Millisecond), strings.Join(ls, " "), r.plis[i], r.tcSent[i], r.tcDropped[i], r.sockDrop[i])
	}
	fmt.Fprintf(w, "publisher: %.1f frames a second on each layer in the window (below 30: this process was short of CPU); keyframe requests (PLI/FIR) high/medium/low: %d/%d/%d\n",
		r.pubFPS, r.keyReqs[0], r.keyReqs[1], r.keyReqs[2])
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
