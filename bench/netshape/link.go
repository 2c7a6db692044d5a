// Package netshape makes bad network links for benchmark players, inside a
// network namespace whose only interface is loopback.
//
// A Link is a rate cap (which may change on a schedule), a round-trip time
// and a random loss. The rate cap is the kernel's: a Shaper puts an HTB
// class per player on lo, selected by the player's pinned UDP destination
// port, with a TBF leaf whose queue holds QueueTime at the class rate (the
// bottleneck queue of a real link; TBF also splits the edge's UDP GSO trains
// into their datagrams, which a byte FIFO would drop whole). This kernel has
// no netem, so delay and loss are the player's own: a Conn wraps its UDP
// socket, delaying what it sends and receives by half the RTT each and
// dropping received datagrams at random, and a Net gives pion such sockets
// bound to the pinned port (webrtc.SettingEngine.SetNet).
//
// The package depends on pion and the standard library only, so benches in
// other modules (the LiveKit one) can import it.
package netshape

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Step is one point of a rate schedule: from At (since the schedule's start)
// the cap is Bps bits per second; 0 is no cap.
type Step struct {
	At  time.Duration
	Bps int64
}

// Link is one player's link.
type Link struct {
	// Rate is the cap's schedule, in order of At, the first at 0; empty: no
	// cap.
	Rate []Step
	// RTT is the round-trip time added in the player's socket (half on
	// receive, half on send).
	RTT time.Duration
	// Loss is the probability that a datagram to the player is dropped.
	Loss float64
}

// Capped reports whether the link has a rate cap at any time.
func (l Link) Capped() bool {
	for _, s := range l.Rate {
		if s.Bps > 0 {
			return true
		}
	}
	return false
}

// Clean reports whether the link is not shaped at all.
func (l Link) Clean() bool { return !l.Capped() && l.RTT == 0 && l.Loss == 0 }

// String is the link in ParseLink's syntax ("clean" when unshaped).
func (l Link) String() string {
	var parts []string
	if l.Capped() {
		var r strings.Builder
		for i, s := range l.Rate {
			if i > 0 {
				r.WriteString("->")
			}
			r.WriteString(FormatRate(s.Bps))
			if i > 0 {
				r.WriteString("@" + s.At.String())
			}
		}
		parts = append(parts, r.String())
	}
	if l.Loss > 0 {
		parts = append(parts, "loss="+strconv.FormatFloat(l.Loss*100, 'g', -1, 64)+"%")
	}
	if l.RTT > 0 {
		parts = append(parts, "rtt="+l.RTT.String())
	}
	if len(parts) == 0 {
		return "clean"
	}
	return strings.Join(parts, ",")
}

// LinkSyntax documents ParseLink's syntax, for command-line help.
const LinkSyntax = `A link is "clean" or comma-separated parts:
  RATE                      a rate cap: 1mbit, 350kbit, 2.5mbit, 800000 (bit/s)
  RATE->RATE@T->RATE@T...   a cap that changes at T after the start:
                            3mbit->700kbit@20s->3mbit@40s
  rtt=D                     round-trip time added in the player's socket: rtt=40ms
  loss=P%                   random loss of what the player receives: loss=5%
for example "1mbit,rtt=40ms" or "loss=5%,rtt=100ms".`

// ParseLink parses a link (see LinkSyntax).
func ParseLink(s string) (Link, error) {
	var l Link
	s = strings.TrimSpace(s)
	if s == "" || s == "clean" {
		return l, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		key, val, ok := strings.Cut(part, "=")
		switch {
		case ok && key == "rtt":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return Link{}, fmt.Errorf("link %q: rtt %q is not a duration", s, val)
			}
			l.RTT = d
		case ok && key == "loss":
			p, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
			if err != nil || p < 0 || p >= 100 {
				return Link{}, fmt.Errorf("link %q: loss %q is not a percentage below 100", s, val)
			}
			l.Loss = p / 100
		case ok:
			return Link{}, fmt.Errorf("link %q: unknown setting %q (rtt=, loss=)", s, key)
		default:
			if l.Rate != nil {
				return Link{}, fmt.Errorf("link %q: two rates", s)
			}
			steps, err := parseSchedule(part)
			if err != nil {
				return Link{}, fmt.Errorf("link %q: %w", s, err)
			}
			l.Rate = steps
		}
	}
	return l, nil
}

func parseSchedule(s string) ([]Step, error) {
	var steps []Step
	for i, p := range strings.Split(s, "->") {
		rate, at, timed := strings.Cut(p, "@")
		var st Step
		if i > 0 {
			if !timed {
				return nil, fmt.Errorf("rate %q after the first needs @time", p)
			}
			d, err := time.ParseDuration(at)
			if err != nil || d <= steps[len(steps)-1].At {
				return nil, fmt.Errorf("%q: the times must be durations, increasing", p)
			}
			st.At = d
		} else if timed {
			return nil, fmt.Errorf("the first rate %q starts at 0, without @", p)
		}
		bps, err := ParseRate(rate)
		if err != nil {
			return nil, err
		}
		st.Bps = bps
		steps = append(steps, st)
	}
	return steps, nil
}

// ParseRate parses a bit rate in tc's units: bit, kbit, mbit, gbit (powers of
// 1000), or bare bits per second.
func ParseRate(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, errors.New("rate " + strconv.Quote(s) + " is not a positive rate like 700kbit or 1mbit")
	}
	bps := int64(f * mult)
	if bps < 8000 {
		return 0, fmt.Errorf("rate %s is below 8kbit", FormatRate(bps))
	}
	return bps, nil
}

// FormatRate writes a bit rate as ParseRate reads it.
func FormatRate(bps int64) string {
	switch {
	case bps >= 1e6 && bps%1e4 == 0:
		return strconv.FormatFloat(float64(bps)/1e6, 'g', -1, 64) + "mbit"
	case bps >= 1e3 && bps%1e3 == 0:
		return strconv.FormatInt(bps/1e3, 10) + "kbit"
	default:
		return strconv.FormatInt(bps, 10) + "bit"
	}
}
