package etcdclient

// Keeping calls off a member that does not answer.
//
// A stopped member (SIGSTOP, a hung disk, a frozen VM) keeps its TCP
// connections open: the kernel still acknowledges, nothing answers. gRPC
// notices only through its keepalive pings, which it will not send more
// often than every 10 s, plus their timeout: for 12 s the round-robin
// balancer keeps handing a third of all calls (and every new stream) to it,
// each of them lost for a whole try. So the guard, which probes the members
// when a try fails (ride.go), also takes the ones that did not answer out
// of the client's endpoints while a quorum of others answers, and a watcher
// probes them every readmitEvery until they answer again, when they are
// put back. Calls then cost one lost try per process per stalled member,
// not one per call for as long as it stalls.
//
// Streams already open on the stalled member (watches) stay on it until it
// answers or gRPC's keepalive ends them; lease keep-alives therefore do not
// use one long-lived stream but a KeepAliveOnce each, which follows the
// endpoints (keepalive.go).

import (
	"context"
	"slices"
	"strings"
	"time"
)

// readmitEvery is how often a member taken out is probed again: a member
// that answers again rejoins within about this, which spreads calls over
// every member again soon after a stall ends.
const readmitEvery = 500 * time.Millisecond

// exclude takes the members that did not answer a probe out of the
// client's endpoints, when the others are a quorum (a member alone, or a
// minority, is never left to be the only one tried: without a quorum calls
// fail anyway, and the full list is the best bet for when it comes back).
func (g *guard) exclude(answered map[string]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	changed := false
	byHost := map[string]bool{}
	for u, ok := range answered {
		byHost[hostPort(u)] = ok
	}
	for _, ep := range g.all {
		if probed, ok := byHost[hostPort(ep)]; ok && !probed && !g.excluded[ep] {
			g.excluded[ep] = true
			changed = true
		}
	}
	if !changed {
		return
	}
	g.cli.SetEndpoints(g.activeLocked()...)
	if !g.readmitting {
		g.readmitting = true
		go g.readmit(g.cli.Ctx())
	}
}

// activeLocked is the configured endpoints less the excluded ones, or all
// of them when excluding would leave none.
func (g *guard) activeLocked() []string {
	var eps []string
	for _, ep := range g.all {
		if !g.excluded[ep] {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		return slices.Clone(g.all)
	}
	return eps
}

// readmit probes the excluded members until each answers again, puts it
// back, and ends when none is excluded or the client closes.
func (g *guard) readmit(ctx context.Context) {
	t := time.NewTicker(readmitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		var out []string
		for ep := range g.excluded {
			out = append(out, ep)
		}
		g.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		back := g.answering(pctx, out)
		cancel()
		g.mu.Lock()
		if len(back) > 0 {
			for _, ep := range back {
				delete(g.excluded, ep)
			}
			g.cli.SetEndpoints(g.activeLocked()...)
		}
		if len(g.excluded) == 0 {
			g.readmitting = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// answering returns the urls whose member answers Status.
func (g *guard) answering(ctx context.Context, urls []string) []string {
	var out []string
	for u, ok := range g.probe(ctx, urls) {
		if ok {
			out = append(out, u)
		}
	}
	return out
}

// hostPort is an endpoint without its scheme: the member list spells a
// member's URL with one, a flag may not.
func hostPort(ep string) string {
	if _, rest, ok := strings.Cut(ep, "://"); ok {
		return rest
	}
	return ep
}
