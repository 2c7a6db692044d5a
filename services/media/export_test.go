package media

import (
	"time"

	"github.com/onair-dev/onair/services/media/sfu"
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

func subOf(s *Server, id string) *sfu.Player {
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
	subOf(s, id).DropOutgoingVideo(drop)
}

// SlowPlayer makes every packet the player is sent take d longer.
func SlowPlayer(s *Server, id string, d time.Duration) { subOf(s, id).SlowDown(d) }

// Stats are a player's counters, summed over its downtracks.
func Stats(s *Server, id string) sfu.PlayerStats {
	sub := subOf(s, id)
	if sub == nil {
		return sfu.PlayerStats{}
	}
	return sub.Stats()
}

// Live counts what the edge holds: streams, sessions, and subscriptions of
// players to publisher tracks.
func Live(s *Server) (origins, sessions, subscriptions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.origins {
		for _, u := range o.Tracks() {
			subscriptions += u.Subscribers()
		}
	}
	return len(s.origins), len(s.sessions), subscriptions
}
