package placement

import "testing"

func TestChoose(t *testing.T) {
	edge := func(addr string, m Meta) Edge { return Edge{Addr: addr, Meta: m} }
	for _, tc := range []struct {
		name   string
		edges  []Edge
		kind   Kind
		recent map[string]int
		want   string
	}{
		{"no edge", nil, Player, nil, ""},
		{"fewest players", []Edge{edge("a", Meta{Players: 3}), edge("b", Meta{Players: 1})}, Player, nil, "b"},
		{"egress counts one per Mbit/s, not one per kbit/s",
			[]Edge{edge("a", Meta{Players: 3, EgressKbps: 1500}), edge("b", Meta{Players: 5, EgressKbps: 0})}, Player, nil, "a"},
		{"egress outweighs players when it is large",
			[]Edge{edge("a", Meta{Players: 3, EgressKbps: 9000}), edge("b", Meta{Players: 5})}, Player, nil, "b"},
		{"ties go to the lower address", []Edge{edge("b", Meta{}), edge("a", Meta{})}, Player, nil, "a"},
		{"recent placements count", []Edge{edge("a", Meta{}), edge("b", Meta{Players: 1})}, Player, map[string]int{"a": 2}, "b"},
		{"an origin with room takes players",
			[]Edge{edge("a", Meta{Publishers: 1, Players: 2, OriginRoom: 50}), edge("b", Meta{Players: 3})}, Player, nil, "a"},
		{"a full origin takes none while another edge is there",
			[]Edge{edge("a", Meta{Publishers: 1, Players: 2, OriginRoom: 2}), edge("b", Meta{Players: 30})}, Player, nil, "b"},
		{"every edge a full origin: least loaded",
			[]Edge{edge("a", Meta{Publishers: 1, Players: 5, OriginRoom: 2}), edge("b", Meta{Publishers: 2, Players: 4, OriginRoom: 2})}, Player, nil, "b"},
		{"publishers ignore origin room",
			[]Edge{edge("a", Meta{Publishers: 1, Players: 2, OriginRoom: 2}), edge("b", Meta{Players: 30})}, Publisher, nil, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Choose(tc.edges, tc.kind, tc.recent); got != tc.want {
				t.Fatalf("Choose = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestChooserSpreadsABurst: players arriving faster than metadata is
// refreshed are spread over the edges, not all sent to the one that looked
// empty.
func TestChooserSpreadsABurst(t *testing.T) {
	var c Chooser
	edges := []Edge{{Addr: "a"}, {Addr: "b"}, {Addr: "c"}}
	got := map[string]int{}
	for range 9 {
		got[c.Choose(edges, Player)]++
	}
	if got["a"] != 3 || got["b"] != 3 || got["c"] != 3 {
		t.Fatalf("9 players placed %v, want 3 on each edge", got)
	}
}

func TestFromInstances(t *testing.T) {
	edges := FromInstances(map[string]any{
		"10.0.0.2:1": map[string]any{"session_tag": "t2", "players": 3.0, "egress_kbps": 1200.0, "publishers": 1.0},
		"10.0.0.1:1": nil,
	})
	if len(edges) != 2 || edges[0].Addr != "10.0.0.1:1" || edges[0].Meta != (Meta{}) {
		t.Fatalf("edges %+v", edges)
	}
	if m := edges[1].Meta; m.SessionTag != "t2" || m.Players != 3 || m.EgressKbps != 1200 || m.Publishers != 1 {
		t.Fatalf("meta %+v", m)
	}
}
