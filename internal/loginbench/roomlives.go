package loginbench

import (
	"github.com/onair-dev/onair/internal/callback"
)

// RoomLives checks the callbacks of each life of a room (one
// room_session_id): a life starts with one room_create, ends with at most
// one room_close, and every login and logout of it arrives between the two.
// A receiver sees each room's callbacks in the order they were delivered, so
// a count here that is not zero is a callback missing, repeated or out of
// order.
type RoomLives struct {
	// Lives is the number of room_session_ids seen.
	Lives int64
	// NoCreate counts lives whose callbacks arrived without a room_create
	// (before the drain ended).
	NoCreate int64
	// CreateNotFirst counts lives whose room_create came after another of
	// their callbacks.
	CreateNotFirst int64
	// Repeated counts lives with more than one room_create or room_close.
	Repeated int64
	// AfterClose counts callbacks of a life that came after its room_close.
	AfterClose int64
}

// OK reports whether every life was whole and in order.
func (l RoomLives) OK() bool {
	return l.NoCreate == 0 && l.CreateNotFirst == 0 && l.Repeated == 0 && l.AfterClose == 0
}

// life is what a receiver has seen of one room_session_id.
type life struct {
	seen            int
	creates, closes int
	createNotFirst  bool
	afterClose      int
}

// lives tracks room lives as callbacks arrive (distinct event_ids only).
type lives map[string]*life

// add records ev, the next distinct callback to arrive.
func (ls lives) add(ev callback.Event) {
	if ev.RoomSessionID == "" {
		return // stream callbacks carry no room_session_id
	}
	l := ls[ev.RoomSessionID]
	if l == nil {
		l = &life{}
		ls[ev.RoomSessionID] = l
	}
	if l.closes > 0 {
		l.afterClose++
	}
	switch ev.Event {
	case callback.RoomCreate:
		if l.seen > 0 && l.creates == 0 {
			l.createNotFirst = true
		}
		l.creates++
	case callback.RoomClose:
		l.closes++
	}
	l.seen++
}

// check sums what was seen.
func (ls lives) check() RoomLives {
	var out RoomLives
	for _, l := range ls {
		out.Lives++
		if l.creates == 0 {
			out.NoCreate++
		}
		if l.createNotFirst {
			out.CreateNotFirst++
		}
		if l.creates > 1 || l.closes > 1 {
			out.Repeated++
		}
		if l.afterClose > 0 {
			out.AfterClose++
		}
	}
	return out
}
