// Package mediasession is the shape of a media session ID, which names the
// edge that holds the session.
//
// A media session lives in one edge's memory, while the gateway reaches the
// media edges through one round-robin connection: Stop or WatchSession sent
// there would land on an edge that does not hold the session about as often
// as there are other edges. So each edge draws a random tag when it starts,
// advertises it in its discovery metadata (MetaKey), and prefixes it to the
// IDs of its sessions; a caller finds the edge whose metadata carries the
// ID's tag and calls that edge. The tag is random rather than derived from
// the edge's address, so a session ID tells a client nothing about the
// cluster's internal addresses.
package mediasession

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// MetaKey is the key of an edge's tag in its discovery metadata.
const MetaKey = "session_tag"

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

// Tag returns the edge tag of a session ID, and false for an ID without one
// (an edge that predates tags).
func Tag(id string) (string, bool) {
	tag, rest, ok := strings.Cut(id, sep)
	if !ok || tag == "" || rest == "" {
		return "", false
	}
	return tag, true
}

// Edge returns the address of the edge that holds session id among the
// registered edges (address: discovery metadata, as discovery.Instances
// lists them). tagged is false when the ID carries no tag; found is false
// when no registered edge has the ID's tag, so the session cannot exist.
func Edge(edges map[string]any, id string) (addr string, tagged, found bool) {
	tag, ok := Tag(id)
	if !ok {
		return "", false, false
	}
	for a, meta := range edges {
		if m, ok := meta.(map[string]any); ok && m[MetaKey] == tag {
			return a, true, true
		}
	}
	return "", true, false
}
