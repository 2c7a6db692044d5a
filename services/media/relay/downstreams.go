package relay

// Downstreams are the edges a stream is fed to from this edge, and the
// fan-out: an edge feeds at most Config.Fanout others and sends further
// ones to the edges it feeds. The stream's holder (the edge's Stream)
// guards it with its own lock, the one that guards the stream's end.
type Downstreams struct {
	feeds map[*Feed]struct{}
}

// Add adds a downstream edge, unless this edge already feeds fanout
// others: then next is one of them to ask instead.
func (ds *Downstreams) Add(out *Feed, fanout int) (next string, ok bool) {
	n := 0
	var pick *Feed
	for d := range ds.feeds {
		if d.edgeID == out.edgeID {
			continue // a pull of that edge being replaced
		}
		n++
		if d.edgeAddr != "" && (pick == nil || d.picked < pick.picked) {
			pick = d
		}
	}
	if n >= fanout && pick != nil {
		pick.picked++
		return pick.edgeAddr, false
	}
	if ds.feeds == nil {
		ds.feeds = map[*Feed]struct{}{}
	}
	ds.feeds[out] = struct{}{}
	return "", true
}

// Remove forgets a downstream edge.
func (ds *Downstreams) Remove(out *Feed) { delete(ds.feeds, out) }

// Len is how many edges are fed.
func (ds *Downstreams) Len() int { return len(ds.feeds) }

// Kick wakes the downstream edges' feeds (the source changed or ended).
func (ds *Downstreams) Kick() {
	for d := range ds.feeds {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}
