package media

import (
	"bufio"
	"context"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/telemetry"
	"github.com/onair-dev/onair/sdk/express"
)

// scrape serves p's metrics as /metrics does and returns the samples of
// the metrics whose names start with prefix, by name: with the labels
// named in keep (e.g. "state", "layer") when they have some, every other
// label dropped (otel_scope_..., job).
func scrape(t *testing.T, p *telemetry.Providers, prefix string, keep ...string) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]float64{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		name := l[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			var kept []string
			for _, kv := range strings.Split(strings.TrimSuffix(name[j+1:], "}"), ",") {
				if k, _, _ := strings.Cut(kv, "="); slices.Contains(keep, k) {
					kept = append(kept, kv)
				}
			}
			name = name[:j]
			if len(kept) > 0 {
				name += "{" + strings.Join(kept, ",") + "}"
			}
		}
		out[name] = v
	}
	return out
}

// TestRelayMetrics: the relay gauges and counters on each edge's /metrics
// agree with the edges' own view of the tree.
func TestRelayMetrics(t *testing.T) {
	c, edges, _, done := relayCluster(t, 8)
	defer done()
	provs := map[*node.Node]*telemetry.Providers{}
	for _, n := range edges {
		p, err := telemetry.Setup(context.Background(), "onair-media-test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		if err := n.MediaServer.RegisterMetrics(p.MeterProvider()); err != nil {
			t.Fatal(err)
		}
		provs[n] = p
	}
	a := edges[0]
	viewers := c.players(t, a.Addr(), 6, express.ResourceModeOnlyL3)
	for _, v := range viewers {
		eventually(t, "frames", func() bool { return v.frameCount("s1") > 10 })
	}
	relays := 0
	for i, n := range edges {
		m := scrape(t, provs[n], "onair_media_")
		t.Logf("edge %d: %v", i, m)
		if got, want := m["onair_media_players"], float64(playersOn(n)); got != want {
			t.Errorf("edge %d: onair_media_players %v, want %v", i, got, want)
		}
		if m["onair_media_egress_packets_total"] <= 0 && playersOn(n) > 0 {
			t.Errorf("edge %d: no egress packets counted", i)
		}
		if i == 0 {
			if m["onair_media_publishers"] != 1 || m["onair_media_relay_upstreams"] != 0 {
				t.Errorf("origin: publishers %v, upstreams %v", m["onair_media_publishers"], m["onair_media_relay_upstreams"])
			}
			continue
		}
		if playersOn(n) == 0 {
			continue
		}
		relays++
		if m["onair_media_relay_upstreams"] != 1 || m["onair_media_relay_received_packets_total"] <= 0 ||
			m["onair_media_relay_received_bytes_total"] <= 0 {
			t.Errorf("relay edge %d: upstreams %v, received %v packets", i, m["onair_media_relay_upstreams"],
				m["onair_media_relay_received_packets_total"])
		}
	}
	m := scrape(t, provs[a], "onair_media_")
	if m["onair_media_relay_downstreams"] != float64(relays) || m["onair_media_relay_sent_packets_total"] <= 0 {
		t.Errorf("origin: downstreams %v (want %d), sent %v packets", m["onair_media_relay_downstreams"], relays,
			m["onair_media_relay_sent_packets_total"])
	}
}
