package sfu

import "time"

// How often one packet is resent. A player's NACK generator (pion's, and
// not only pion's) asks for a missing packet again every ~100 ms until it
// sees the packet, for up to a couple of seconds; pion's never learns of a
// repair that arrives on the RTX stream. Answering every one of those
// NACKs sent about five copies of each lost packet on a lossy link, a
// fifth of the player's bandwidth spent on duplicates. So a downtrack
// resends a packet at most maxResends times, at least resendGap apart
// (less on a short round trip: a resend lost on the way is known lost
// after a round trip), as LiveKit's sequencer does.
const (
	maxResends = 3
	resendGap  = 100 * time.Millisecond
	// resendSlots is how many of the newest outgoing sequence numbers the
	// downtrack remembers resends of (a power of two): about two seconds
	// of a 2.5 Mbit/s layer, more than the maxRepairAge (plus a round
	// trip) in which a packet is resent at all.
	resendSlots = 512
	// A slot last touched longer ago than resendForget is about a packet
	// of 65,536 sequence numbers before, whatever its number says.
	resendForget = 5 * time.Second
)

// resendSlot is what the downtrack remembers of one outgoing sequence
// number: how often it was resent (0: never, or the slot is free) and
// when last, in milliseconds (wrapping: only differences count).
type resendSlot struct {
	seq uint16
	n   uint8
	at  uint32
}

// resendRing is the resends of a downtrack's recent packets, indexed by
// outgoing sequence number. A downtrack allocates it at its first NACK, so
// a player on a clean link pays nothing, and it is never allocated again:
// the forwarding path itself does not touch it.
type resendRing [resendSlots]resendSlot

// resendGapFor is the least time between two resends of a packet for a
// player with round trip rtt (0: unknown): a quarter less than
// min(resendGap, 2 x rtt). NACK generators repeat at about that period
// (pion's every 100 ms), so a repeat arrives as often a few milliseconds
// early as late; held to the full gap, half the second tries waited for a
// third NACK, 100 ms more, and a frame whose first repair was lost froze
// (measured at 5 % loss and 100 ms RTT: 7 % of the time frozen, against
// 0.5 % with every NACK answered).
func resendGapFor(rtt time.Duration) time.Duration {
	g := resendGap
	if rtt > 0 {
		g = min(resendGap, 2*rtt)
	}
	return g - g/4
}

// allow reports whether packet seq may be resent at nowMs (milliseconds)
// with gap between resends.
func (r *resendRing) allow(seq uint16, nowMs uint32, gap time.Duration) bool {
	s := &r[seq%resendSlots]
	if s.n == 0 || s.seq != seq || nowMs-s.at > uint32(resendForget/time.Millisecond) {
		return true // never resent, or the slot is another packet's
	}
	return s.n < maxResends && nowMs-s.at > uint32(gap/time.Millisecond)
}

// mark records that packet seq was resent at nowMs.
func (r *resendRing) mark(seq uint16, nowMs uint32) {
	s := &r[seq%resendSlots]
	if s.n == 0 || s.seq != seq || nowMs-s.at > uint32(resendForget/time.Millisecond) {
		*s = resendSlot{seq: seq}
	}
	s.n++
	s.at = nowMs
}
