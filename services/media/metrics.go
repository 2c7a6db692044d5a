package media

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/onair-dev/onair/services/media/sfu"
)

// RegisterMetrics exports the edge's figures through mp (Prometheus names
// in brackets, as /metrics serves them):
//   - onair.media.players, onair.media.publishers: sessions now
//     [onair_media_players, onair_media_publishers];
//   - onair.media.egress.packets: RTP packets written to players
//     [onair_media_egress_packets_total];
//   - onair.media.relay.upstreams: streams this edge pulls from another edge;
//     onair.media.relay.downstreams: edges pulling a stream from this one
//     [onair_media_relay_upstreams, onair_media_relay_downstreams];
//   - onair.media.relay.sent_packets, sent_bytes, received_packets,
//     received_bytes: RTP between edges, payload bytes
//     [onair_media_relay_sent_packets_total, ...];
//   - onair.media.relay.repulls: upstreams lost or dropped and pulled again;
//     onair.media.relay.moves: of those, because the stream's publisher
//     moved to another edge [onair_media_relay_repulls_total,
//     onair_media_relay_moves_total];
//   - onair.media.relay.layers: simulcast layers of the streams this edge
//     pulls, attribute state = pulled (a player or downstream edge here
//     forwards it, or did within seconds) or skipped (not received)
//     [onair_media_relay_layers];
//   - onair.media.udp.packets, onair.media.udp.messages,
//     onair.media.udp.writes: packets the edge's socket sent, the messages
//     they went in (fewer where the kernel segments: GSO) and the system
//     calls that sent them [onair_media_udp_packets_total, ...];
//   - onair.media.players.video: players by the video they get, attribute
//     layer = low, medium, high, paused or single (a track without
//     simulcast) [onair_media_players_video];
//   - onair.media.bwe.estimate: the players' bandwidth estimates, mean and
//     minimum (attribute stat) [onair_media_bwe_estimate];
//   - onair.media.layer.switches: layer switches done by players' downtracks;
//     onair.media.rtx.denied: retransmissions not sent because they would
//     exceed the player's share of its estimate; onair.media.rtx.sent:
//     packets resent; onair.media.nack.repeats: NACKs not answered, the
//     packet resent three times already or just now
//     [onair_media_layer_switches_total, onair_media_rtx_denied_total,
//     onair_media_rtx_sent_total, onair_media_nack_repeats_total].
//
// Everything is read when scraped: nothing is added to the packet path.
func (s *Server) RegisterMetrics(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/onair-dev/onair/services/media")
	gauges := []struct {
		name, desc string
		f          func() int64
	}{
		{"onair.media.players", "player sessions on this edge", func() int64 { _, p := s.sessionLoad(); return int64(p) }},
		{"onair.media.publishers", "streams published on this edge", func() int64 { p, _ := s.sessionLoad(); return int64(p) }},
		{"onair.media.relay.upstreams", "streams this edge pulls from another edge", func() int64 { return int64(s.relay.Upstreams()) }},
		{"onair.media.relay.downstreams", "edges pulling a stream from this edge", s.relay.Counters.Downstreams.Load},
	}
	for _, g := range gauges {
		if _, err := m.Int64ObservableGauge(g.name, metric.WithDescription(g.desc),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(g.f())
				return nil
			})); err != nil {
			return err
		}
	}
	counters := []struct {
		name, desc string
		f          func() int64
	}{
		{"onair.media.egress.packets", "RTP packets written to players", s.Egress.Load},
		{"onair.media.udp.packets", "UDP packets the edge's socket sent", s.bc.Packets},
		{"onair.media.udp.messages", "messages the socket's packets went in (several packets each with GSO)", s.bc.Messages},
		{"onair.media.udp.writes", "system calls (sendmmsg) that sent the socket's messages", s.bc.Batches},
		{"onair.media.relay.sent_packets", "RTP packets sent to downstream edges", s.relay.Counters.OutPackets.Load},
		{"onair.media.relay.sent_bytes", "RTP payload bytes sent to downstream edges", s.relay.Counters.OutOctets.Load},
		{"onair.media.relay.received_packets", "RTP packets received from upstream edges", s.relay.Counters.InPackets.Load},
		{"onair.media.relay.received_bytes", "RTP payload bytes received from upstream edges", s.relay.Counters.InOctets.Load},
		{"onair.media.relay.repulls", "upstreams lost or dropped and pulled again", s.relay.Counters.Repulls.Load},
		{"onair.media.relay.moves", "upstreams dropped because the stream's publisher moved to another edge", s.relay.Counters.Moves.Load},
	}
	for _, c := range counters {
		if _, err := m.Int64ObservableCounter(c.name, metric.WithDescription(c.desc),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(c.f())
				return nil
			})); err != nil {
			return err
		}
	}
	if _, err := m.Int64ObservableGauge("onair.media.relay.layers", metric.WithDescription("simulcast layers of pulled streams, pulled or skipped"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			pulled, skipped := s.relay.LayerCounts()
			o.Observe(int64(pulled), metric.WithAttributes(attribute.String("state", "pulled")))
			o.Observe(int64(skipped), metric.WithAttributes(attribute.String("state", "skipped")))
			return nil
		})); err != nil {
		return err
	}
	return s.registerVideoMetrics(m)
}

// registerVideoMetrics exports the players' video figures with one
// callback: a scrape walks the players once (videoStats) for all of them.
func (s *Server) registerVideoMetrics(m metric.Meter) error {
	layers, err := m.Int64ObservableGauge("onair.media.players.video", metric.WithDescription("players by the video layer they get"))
	if err != nil {
		return err
	}
	est, err := m.Int64ObservableGauge("onair.media.bwe.estimate", metric.WithDescription("players' bandwidth estimates, bits per second"))
	if err != nil {
		return err
	}
	switches, err := m.Int64ObservableCounter("onair.media.layer.switches", metric.WithDescription("simulcast layer switches of players"))
	if err != nil {
		return err
	}
	denied, err := m.Int64ObservableCounter("onair.media.rtx.denied",
		metric.WithDescription("retransmissions over the player's share of its estimate"))
	if err != nil {
		return err
	}
	sent, err := m.Int64ObservableCounter("onair.media.rtx.sent", metric.WithDescription("packets resent for players' NACKs"))
	if err != nil {
		return err
	}
	repeats, err := m.Int64ObservableCounter("onair.media.nack.repeats",
		metric.WithDescription("NACKs not answered: the packet was resent three times already, or just now"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		v := s.videoStats()
		for _, name := range [...]string{"low", "medium", "high", "paused", "single"} {
			o.ObserveInt64(layers, v.layers[name], metric.WithAttributes(attribute.String("layer", name)))
		}
		if v.players > 0 {
			o.ObserveInt64(est, v.estSum/v.players, metric.WithAttributes(attribute.String("stat", "mean")))
			o.ObserveInt64(est, v.estMin, metric.WithAttributes(attribute.String("stat", "min")))
		}
		o.ObserveInt64(switches, v.switches)
		o.ObserveInt64(denied, v.rtxDenied)
		o.ObserveInt64(sent, v.retransmits)
		o.ObserveInt64(repeats, v.nackRepeats)
		return nil
	}, layers, est, switches, denied, sent, repeats)
	return err
}

// videoStats are the players' video figures, summed at scrape time.
type videoStats struct {
	layers                   map[string]int64
	players, estSum, estMin  int64
	switches, rtxDenied      int64
	nackRepeats, retransmits int64
}

func (s *Server) videoStats() videoStats {
	v := videoStats{layers: map[string]int64{"low": 0, "medium": 0, "high": 0, "paused": 0, "single": 0}}
	s.mu.Lock()
	subs := make([]*sfu.Player, 0, len(s.sessions))
	for _, ss := range s.sessions {
		if ss.sub != nil {
			subs = append(subs, ss.sub)
		}
	}
	s.mu.Unlock()
	for _, sub := range subs {
		st := sub.Video()
		v.players++
		v.estSum += st.Estimate
		if v.estMin == 0 || st.Estimate < v.estMin {
			v.estMin = st.Estimate
		}
		v.switches += st.Switches
		v.rtxDenied += st.RTXDenied
		v.nackRepeats += st.NackRepeats
		v.retransmits += st.Retransmits
		switch {
		case !st.HasVideo:
		case st.Paused:
			v.layers["paused"]++
		case !st.Simulcast:
			v.layers["single"]++
		default:
			v.layers[[...]string{"", "low", "medium", "high"}[st.Layer]]++
		}
	}
	return v
}
