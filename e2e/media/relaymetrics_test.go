package media

import (
	"bufio"
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/telemetry"
	"github.com/onair-dev/onair/sdk/express"
)

// scrape serves n's media metrics to Prometheus as /metrics does and
// returns each sample by metric name (labels dropped).
func scrape(t *testing.T, p *telemetry.Providers) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]float64{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "onair_media_") {
			continue
		}
		name, rest, _ := strings.Cut(l, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, rest = name[:i], l[strings.LastIndexByte(l, ' ')+1:]
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
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
		m := scrape(t, provs[n])
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
	m := scrape(t, provs[a])
	if m["onair_media_relay_downstreams"] != float64(relays) || m["onair_media_relay_sent_packets_total"] <= 0 {
		t.Errorf("origin: downstreams %v (want %d), sent %v packets", m["onair_media_relay_downstreams"], relays,
			m["onair_media_relay_sent_packets_total"])
	}
}
