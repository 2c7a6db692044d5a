package mediasession

import "testing"

func TestEdge(t *testing.T) {
	a, b := NewTag(), NewTag()
	edges := map[string]any{
		"10.0.0.1:9000": map[string]any{MetaKey: a, "players": 3.0},
		"10.0.0.2:9000": map[string]any{MetaKey: b},
		"10.0.0.3:9000": nil, // an edge without a tag
	}
	if addr, tagged, found := Edge(edges, NewID(b)); addr != "10.0.0.2:9000" || !tagged || !found {
		t.Fatalf("Edge(b's ID) = %q %v %v", addr, tagged, found)
	}
	if _, tagged, found := Edge(edges, NewID(NewTag())); !tagged || found {
		t.Fatalf("an unregistered edge's ID: tagged %v found %v, want true false", tagged, found)
	}
	for _, id := range []string{"00000000000000000000000000000000", "-abc", "abc-", ""} {
		if _, tagged, _ := Edge(edges, id); tagged {
			t.Fatalf("%q is not a tagged ID", id)
		}
	}
}
