package loginbench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile is the p-quantile (0..1) of d by the nearest-rank rule: the
// smallest value with at least p of the values at or below it; 0 for none.
// d is sorted in place.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(p*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// Rate is Cycles per second of Elapsed.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Cycles) / r.Elapsed.Seconds()
}

// CPUPerCycle is the measured processes' CPU over the cycles (0: none).
func (r *Result) CPUPerCycle() time.Duration {
	if r.Cycles == 0 {
		return 0
	}
	return r.TotalCPU() / time.Duration(r.Cycles)
}

// RevisionsPerCycle is etcd revisions over the cycles (-1: not measured).
func (r *Result) RevisionsPerCycle() float64 {
	if r.Revisions < 0 || r.Cycles == 0 {
		return -1
	}
	return float64(r.Revisions) / float64(r.Cycles)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// latencies is "p50 / p99 / max" of d, or "-".
func latencies(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	return ms(Percentile(d, 0.5)) + " / " + ms(Percentile(d, 0.99)) + " / " + ms(Percentile(d, 1))
}

// Print writes the summary table.
func (r *Result) Print(w io.Writer) {
	c := r.Config
	what := "login + logout"
	if c.Stay {
		what = "login, staying"
	}
	pace := ""
	if c.Rate > 0 {
		pace = fmt.Sprintf(" at most %g/s,", c.Rate)
	}
	fmt.Fprintf(w, "\nonair bench logins: %d workers, %d rooms,%s %s cycles, %s\n\n", c.Workers, c.Rooms, pace, what, c.Duration)
	row := func(k, v string) { fmt.Fprintf(w, "  %-30s %s\n", k, v) }
	row("cycles", fmt.Sprintf("%d in %.1f s (%.1f/s)", r.Cycles, r.Elapsed.Seconds(), r.Rate()))
	row("logins / logouts", fmt.Sprintf("%d / %d", r.Logins, r.Logouts))
	row("login p50 / p99 / max", latencies(r.LoginTimes))
	if !c.Stay {
		row("logout p50 / p99 / max", latencies(r.LogoutTimes))
	}
	row("errors", strconv.FormatInt(r.ErrorCount(), 10))
	for _, k := range slices.SortedFunc(maps.Keys(r.Errors), func(a, b ErrorKey) int {
		return cmp.Or(cmp.Compare(a.Op, b.Op), cmp.Compare(a.Code, b.Code))
	}) {
		code := strconv.Itoa(k.Code)
		if k.Code == 0 {
			code = "no code"
		}
		row("  "+k.Op+" "+code, strconv.FormatInt(r.Errors[k], 10))
	}
	if r.FirstError != "" {
		row("  first", r.FirstError)
	}
	if r.Revisions >= 0 {
		per := "-"
		if r.Cycles > 0 {
			per = fmt.Sprintf("%.2f", r.RevisionsPerCycle())
		}
		row("etcd revisions", fmt.Sprintf("%d (%s per cycle)", r.Revisions, per))
	}
	if len(c.PIDs) > 0 {
		row("server CPU", fmt.Sprintf("%.2f s over %d processes", r.TotalCPU().Seconds(), len(c.PIDs)))
		if len(c.PIDs) > 1 {
			var each []string
			for i, p := range c.PIDs {
				each = append(each, fmt.Sprintf("%d: %.2f s", p, r.CPU[i].Seconds()))
			}
			row("  by process (pid)", strings.Join(each, ", "))
		}
		per := "-"
		if r.Cycles > 0 {
			per = ms(r.CPUPerCycle())
		}
		row("server CPU per cycle", per)
	}
	if r.OwnCPU > 0 && r.Elapsed > 0 {
		row("bench CPU", fmt.Sprintf("%.2f s (%.2f cores)", r.OwnCPU.Seconds(), r.OwnCPU.Seconds()/r.Elapsed.Seconds()))
	}
	if cr := r.Crowd; cr != nil {
		see := fmt.Sprintf("%d of %d users (largest room %d), %d streams broke", cr.Seen, cr.Users, cr.LargestRoom, cr.Broken)
		if cr.Seen == cr.Users {
			see += fmt.Sprintf(", %s after the last login", ms(cr.SeeAll))
		} else {
			see += fmt.Sprintf("; the others' counts off by (offset: users) %v", cr.Off)
		}
		see += fmt.Sprintf("; user-left events %d (nobody left)", cr.Leaves)
		if cr.Extra > 0 {
			see += fmt.Sprintf("; up to %d users more than logged in (logins reported failed that stayed)", cr.Extra)
		}
		row("everyone sees everyone", see)
		if h, st := cr.HeapPerSession(); h >= 0 {
			row("replica heap per session", fmt.Sprintf("%.1f KiB (+ goroutine stacks %.1f KiB)", h/1024, st/1024))
			for i := range cr.HeapAfter {
				row(fmt.Sprintf("  %s", c.HeapPprof[i]), fmt.Sprintf("heap %.1f -> %.1f MiB, stacks %.1f -> %.1f MiB, %d goroutines",
					float64(cr.HeapBefore[i])/(1<<20), float64(cr.HeapAfter[i])/(1<<20),
					float64(cr.StackBefore[i])/(1<<20), float64(cr.StackAfter[i])/(1<<20), cr.Goroutines[i]))
			}
		}
	}
	if cb := r.Callbacks; cb != nil && c.Callbacks != nil {
		row("callbacks received", fmt.Sprintf("%d (%d distinct, %d repeated, %d bad signatures)", cb.Received, cb.Unique, cb.Duplicates(), cb.BadSignature))
		for _, ev := range slices.Sorted(maps.Keys(cb.ByEvent)) {
			row("  "+ev, strconv.FormatInt(cb.ByEvent[ev], 10))
		}
		if r.Elapsed > 0 {
			row("callbacks per second", fmt.Sprintf("%.1f (distinct, over the measured time)", float64(cb.Unique)/r.Elapsed.Seconds()))
		}
		delays := "-"
		if len(cb.Delays) > 0 {
			delays = ms(Percentile(cb.Delays, 0.5)) + " / " + ms(Percentile(cb.Delays, 0.99))
		}
		row("callback delay p50 / p99", delays+" (from event_time_ms)")
		l := cb.Lives
		row("room lives", fmt.Sprintf("%d (without room_create %d, room_create not first %d, repeated create/close %d, callbacks after room_close %d)",
			l.Lives, l.NoCreate, l.CreateNotFirst, l.Repeated, l.AfterClose))
		if cb.OutboxMax >= 0 {
			row("outbox depth max / after", fmt.Sprintf("%d / %d (during the run / after the drain)", cb.OutboxMax, cb.OutboxEnd))
		}
	}
	fmt.Fprintln(w)
}
