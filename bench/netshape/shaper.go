package netshape

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Device is the interface a Shaper shapes: the namespace's loopback.
const Device = "lo"

// QueueTime is how long the bottleneck queue of a capped link is at its
// rate: what arrives when it is full is dropped, as at a real link's
// bottleneck.
const QueueTime = 200 * time.Millisecond

// uncapped is the rate of a class whose cap was lifted (Step.Bps 0).
const uncapped = 10_000_000_000

// CheckNamespace returns an error unless this process is in a network
// namespace whose only interface is lo: a Shaper refuses to run anywhere
// else, so it can never shape the host's traffic. It reads
// /proc/self/net/dev, which lists the interfaces of the reader's namespace;
// /sys/class/net lists those of the namespace that mounted /sys, the host's
// after a bare `unshare -n`.
func CheckNamespace() error {
	f, err := os.Open("/proc/self/net/dev")
	if err != nil {
		return fmt.Errorf("netshape: cannot list this namespace's interfaces: %w", err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, _, ok := strings.Cut(sc.Text(), ":"); ok && !strings.Contains(name, "|") {
			names = append(names, strings.TrimSpace(name))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("netshape: cannot list this namespace's interfaces: %w", err)
	}
	if len(names) != 1 || names[0] != Device {
		return fmt.Errorf("netshape: shaping runs only in a network namespace whose only interface is %s (start it under `unshare -n`); this one has %s",
			Device, strings.Join(names, ", "))
	}
	return nil
}

// Shaper caps players' links with tc on lo: a root HTB qdisc, and per
// player an HTB class at the cap, selected by a u32 filter on the player's
// UDP destination port, with a TBF leaf that holds the bottleneck queue
// (QueueTime at the cap) and splits GSO trains into datagrams. Traffic to
// ports without a class is not shaped.
type Shaper struct {
	mu      sync.Mutex
	classes map[int]uint16 // destination port -> class minor
	next    uint16
}

// NewShaper checks the namespace (CheckNamespace), brings lo up and puts
// the root HTB qdisc on it, replacing whatever was there.
func NewShaper(ctx context.Context) (*Shaper, error) {
	if err := CheckNamespace(); err != nil {
		return nil, err
	}
	if err := run(ctx, "ip", "link", "set", Device, "up"); err != nil {
		return nil, err
	}
	if err := tc(ctx, "qdisc", "replace", "dev", Device, "root", "handle", "1:", "htb"); err != nil {
		return nil, err
	}
	return &Shaper{classes: map[int]uint16{}, next: 10}, nil
}

// SetRate caps what is sent to UDP port port at bps bits per second (0:
// uncapped). The first call for a port adds its class, queue and filter;
// later ones change the class's rate and the queue's size in place (`tc
// class change`), so the flow keeps its queue.
func (s *Shaper) SetRate(ctx context.Context, port int, bps int64) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("netshape: port %d out of range", port)
	}
	if bps <= 0 {
		bps = uncapped
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	minor, ok := s.classes[port]
	verb := "change"
	if !ok {
		if s.next == 0xffff {
			return fmt.Errorf("netshape: too many shaped ports")
		}
		minor, verb = s.next, "add"
		s.next++
	}
	classID := fmt.Sprintf("1:%x", minor)
	rate := strconv.FormatInt(bps, 10) + "bit"
	if err := tc(ctx, "class", verb, "dev", Device, "parent", "1:", "classid", classID,
		"htb", "rate", rate, "ceil", rate, "quantum", "1600"); err != nil {
		return err
	}
	// The leaf releases at once whatever HTB lets through: its rate is far
	// above the class's; its burst (the largest packet it takes whole) makes
	// it split a GSO train into datagrams; its limit is the bottleneck queue.
	limit := max(bps/8*int64(QueueTime)/int64(time.Second), 8000)
	if err := tc(ctx, "qdisc", map[bool]string{true: "add", false: "change"}[!ok], "dev", Device, "parent", classID,
		"handle", fmt.Sprintf("%x:", minor), "tbf", "rate", "1gbit", "burst", "4000", "limit", strconv.FormatInt(limit, 10)); err != nil {
		return err
	}
	if !ok {
		if err := tc(ctx, "filter", "add", "dev", Device, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
			"match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", strconv.Itoa(port), "0xffff", "flowid", classID); err != nil {
			return err
		}
		s.classes[port] = minor
	}
	return nil
}

// Follow applies a rate schedule to port: each step's rate at start plus
// its At. It returns when the last step is applied, or with ctx's error.
func (s *Shaper) Follow(ctx context.Context, port int, steps []Step, start time.Time) error {
	for _, st := range steps {
		if d := time.Until(start.Add(st.At)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := s.SetRate(ctx, port, st.Bps); err != nil {
			return err
		}
	}
	return nil
}

// Stats is what tc counted for port's queue: bytes and packets sent on,
// packets dropped at the full queue.
func (s *Shaper) Stats(ctx context.Context, port int) (sentBytes, sentPackets, dropped int64, err error) {
	s.mu.Lock()
	minor, ok := s.classes[port]
	s.mu.Unlock()
	if !ok {
		return 0, 0, 0, fmt.Errorf("netshape: port %d is not shaped", port)
	}
	out, err := exec.CommandContext(ctx, "tc", "-s", "qdisc", "show", "dev", Device, "parent", fmt.Sprintf("1:%x", minor)).Output()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("netshape: tc -s qdisc show: %w", err)
	}
	// " Sent 1234 bytes 5 pkt (dropped 6, overlimits 7 requeues 0)"
	f := strings.Fields(strings.NewReplacer("(", " ", ")", " ", ",", " ").Replace(string(out)))
	for i := 0; i+1 < len(f); i++ {
		n, _ := strconv.ParseInt(f[i+1], 10, 64)
		switch f[i] {
		case "Sent":
			sentBytes = n
			if i+3 < len(f) {
				sentPackets, _ = strconv.ParseInt(f[i+3], 10, 64)
			}
		case "dropped":
			dropped = n
		}
	}
	return sentBytes, sentPackets, dropped, nil
}

// Close removes the root qdisc and with it every class and filter.
func (s *Shaper) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.classes = map[int]uint16{}
	return tc(ctx, "qdisc", "del", "dev", Device, "root")
}

func tc(ctx context.Context, args ...string) error { return run(ctx, "tc", args...) }

func run(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netshape: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
