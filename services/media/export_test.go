package media

import (
	"sync/atomic"
	"time"
)

// Test hooks: fault injection on one player's path and a look inside.

// PlayerSessions lists the IDs of the edge's player sessions.
func PlayerSessions(s *Server) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, ss := range s.sessions {
		if ss.player {
			ids = append(ids, id)
		}
	}
	return ids
}

func subOf(s *Server, id string) *subscriber {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[id]; ss != nil {
		return ss.sub
	}
	return nil
}

// DropVideo drops the player's outgoing live video packets for which drop
// says so, as a lossy path would (retransmissions get through).
func DropVideo(s *Server, id string, drop func(seq uint16) bool) {
	for _, d := range subOf(s, id).tracks {
		if d.kind.String() == "video" {
			d.dropOut.Store(&drop)
		}
	}
}

// SlowPlayer makes every packet the player is sent take d longer.
func SlowPlayer(s *Server, id string, d time.Duration) { subOf(s, id).delay.Store(int64(d)) }

// PlayerStats are a player's counters, summed over its downtracks.
type PlayerStats struct{ Sent, Retransmits, Drops, NackMisses, Reports int64 }

func Stats(s *Server, id string) PlayerStats {
	var st PlayerStats
	sub := subOf(s, id)
	if sub == nil {
		return st
	}
	for _, d := range sub.tracks {
		st.Sent += d.sent.Load()
		st.Retransmits += d.retransmits.Load()
		st.Drops += d.drops.Load()
		st.NackMisses += d.nackMisses.Load()
		st.Reports += d.reports.Load()
	}
	return st
}

// Live counts what the edge holds: streams, sessions, and subscriptions of
// players to publisher tracks.
func Live(s *Server) (origins, sessions, subscriptions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.origins {
		for _, u := range o.currentTracks() {
			subscriptions += u.subscribers()
		}
	}
	return len(s.origins), len(s.sessions), subscriptions
}

var _ = atomic.Int64{}
