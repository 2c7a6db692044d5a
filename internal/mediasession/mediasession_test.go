package mediasession

import (
	"testing"

	"github.com/onair-dev/onair/internal/placement"
)

func TestOwner(t *testing.T) {
	a, b := NewTag(), NewTag()
	edges := []placement.Edge{
		{Addr: "10.0.0.1:9000", Meta: placement.Meta{SessionTag: a, Players: 3}},
		{Addr: "10.0.0.2:9000", Meta: placement.Meta{SessionTag: b}},
		{Addr: "10.0.0.3:9000"}, // an edge without a tag
	}
	for _, tc := range []struct {
		name, id, want string
		found          bool
	}{
		{"b's session", NewID(b), "10.0.0.2:9000", true},
		{"a's session", NewID(a), "10.0.0.1:9000", true},
		{"an unregistered edge's session", NewID(NewTag()), "", false},
		{"no tag", "00000000000000000000000000000000", "", false},
		{"empty tag", "-abc", "", false},
		{"nothing after the tag", a + "-", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if addr, found := Owner(edges, tc.id); addr != tc.want || found != tc.found {
				t.Fatalf("Owner(%q) = %q %v, want %q %v", tc.id, addr, found, tc.want, tc.found)
			}
		})
	}
}
