// Package mediasession is the shape of a media session ID, which names the
// edge that holds the session, and the one resolver from an ID to its edge.
//
// A media session lives in one edge's memory, so the calls on it (Stop,
// WatchSession, a WHIP/WHEP session URL) must reach that edge. Each edge
// draws a random tag when it starts, advertises it in its discovery
// metadata (placement.Meta.SessionTag), and prefixes it to the IDs of its
// sessions; Owner finds the edge whose metadata carries the ID's tag. The
// tag is random rather than derived from the edge's address, so a session
// ID tells a client nothing about the cluster's internal addresses.
package mediasession

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/onair-dev/onair/internal/placement"
)

// sep separates the tag from the rest of the ID. Hex digits never contain
// it, and it needs no escaping in a URL path.
const sep = "-"

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewTag returns a new edge tag: 48 random bits, so that two edges of one
// cluster do not draw the same one.
func NewTag() string { return randomHex(6) }

// NewID returns a new session ID of the edge with tag: the tag, then 128
// random bits, which are what makes the ID a credential.
func NewID(tag string) string { return tag + sep + randomHex(16) }

// Tag returns the edge tag of a session ID, and false for an ID without one.
func Tag(id string) (string, bool) {
	tag, rest, ok := strings.Cut(id, sep)
	if !ok || tag == "" || rest == "" {
		return "", false
	}
	return tag, true
}

// Owner returns the address of the edge that holds session id among the
// registered edges, and false when no registered edge has the ID's tag (or
// the ID has none): then the session does not exist, or its edge is gone
// and the session with it.
func Owner(edges []placement.Edge, id string) (string, bool) {
	tag, ok := Tag(id)
	if !ok {
		return "", false
	}
	for _, e := range edges {
		if e.Meta.SessionTag == tag {
			return e.Addr, true
		}
	}
	return "", false
}
