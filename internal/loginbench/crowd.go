package loginbench

// A crowd run (--stay --users N --see-all): N users log into few rooms and
// stay, every one with user updates on; the run then waits until every
// user has been told of every other user of its room and reports how long
// after the last login that took, and what each idle session costs the
// room replicas' heaps (their /debug/pprof/heap, after a GC, before the
// logins and once everyone sees everyone).

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onair-dev/onair/sdk/express"
)

// seer is a logged-in user whose view of the room the run checks.
type seer interface {
	// seen is how many other users it was told are present, and when that
	// last changed (Unix ns).
	seen() (n, changed int64)
	// broke reports an event stream that ended before the run did.
	broke() bool
	// leaves is how many users it was told left.
	leaves() int64
	close()
}

func (l *leanClient) seen() (int64, int64) { return l.others.Load(), l.changed.Load() }
func (l *leanClient) broke() bool          { return l.broken.Load() }
func (l *leanClient) leaves() int64        { return l.left.Load() }

// countingHandler counts the users an SDK engine reports.
type countingHandler struct {
	express.BaseEventHandler
	others, changed, left atomic.Int64
	stopped               atomic.Bool
}

func (h *countingHandler) OnRoomUserUpdate(t express.UpdateType, users []express.User, _ string) {
	n := int64(len(users))
	if t != express.UpdateTypeAdd {
		h.left.Add(n)
		n = -n
	}
	h.others.Add(n)
	h.changed.Store(time.Now().UnixNano())
}

func (h *countingHandler) OnRoomStateChanged(reason express.RoomStateChangedReason, _ int, _ string, _ string) {
	if reason == express.RoomStateChangedReasonKickOut || reason == express.RoomStateChangedReasonReconnectFailed {
		h.stopped.Store(true)
	}
}

// engineSeer is an SDK engine with a counting handler.
type engineSeer struct {
	e *express.Engine
	h *countingHandler
}

func (s engineSeer) seen() (int64, int64) { return s.h.others.Load(), s.h.changed.Load() }
func (s engineSeer) broke() bool          { return s.h.stopped.Load() }
func (s engineSeer) leaves() int64        { return s.h.left.Load() }
func (s engineSeer) close()               { s.e.DestroyEngine(nil) }

// kept is a user that stayed logged in, in room (an index).
type kept struct {
	s    seer
	room int
}

// CrowdResult is what a crowd run measured after its logins.
type CrowdResult struct {
	// Users logged in, and the largest room.
	Users, LargestRoom int
	// SeeAll is from the last login's return until every user was told of
	// every other user of its room (0 with Seen < Users).
	SeeAll time.Duration
	// Seen is how many users saw everyone before the wait's end; Broken
	// how many event streams broke.
	Seen, Broken int
	// Leaves is how many user-left events the users were told of, all
	// together (nobody leaves in a crowd run: each is a false one).
	Leaves int64
	// Extra is the most users one was told of beyond those the bench
	// logged in: sessions of logins it saw fail.
	Extra int64
	// Off counts the users that did not see everyone by how far off
	// their count was.
	Off map[int64]int
	// HeapBefore and HeapAfter are the replicas' live heaps (HeapAlloc
	// after a GC) and StackBefore, StackAfter their goroutine stacks, by
	// --heap-pprof URL; -1: not read.
	HeapBefore, HeapAfter, StackBefore, StackAfter []int64
	Goroutines                                     []int64
}

// HeapPerSession is the replicas' heap growth over the sessions.
func (c *CrowdResult) HeapPerSession() (heap, stack float64) {
	var dh, ds int64
	for i := range c.HeapBefore {
		if c.HeapBefore[i] < 0 || c.HeapAfter[i] < 0 {
			return -1, -1
		}
		dh += c.HeapAfter[i] - c.HeapBefore[i]
		ds += c.StackAfter[i] - c.StackBefore[i]
	}
	if c.Users == 0 {
		return -1, -1
	}
	return float64(dh) / float64(c.Users), float64(ds) / float64(c.Users)
}

// waitSeeAll waits until every kept user saw every other user of its room,
// or timeout; last is when the last login returned.
func waitSeeAll(ctx context.Context, users []kept, last time.Time, timeout time.Duration, progress func(string)) *CrowdResult {
	per := map[int]int64{}
	for _, k := range users {
		per[k.room]++
	}
	res := &CrowdResult{Users: len(users)}
	for _, n := range per {
		res.LargestRoom = max(res.LargestRoom, int(n))
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastLine := time.Now()
	for {
		seen, broken := 0, 0
		var latest, leaves, extra int64
		off := map[int64]int{}
		for _, k := range users {
			n, changed := k.s.seen()
			if n >= per[k.room]-1 {
				// More: sessions of logins the bench saw fail (reported
				// as Extra).
				seen++
				latest = max(latest, changed)
				extra = max(extra, n-(per[k.room]-1))
			} else {
				off[n-(per[k.room]-1)]++
			}
			if k.s.broke() {
				broken++
			}
			leaves += k.s.leaves()
		}
		res.Seen, res.Broken, res.Off, res.Leaves, res.Extra = seen, broken, off, leaves, extra
		if seen == len(users) {
			res.SeeAll = max(time.Duration(latest-last.UnixNano()), 0)
			return res
		}
		if time.Since(lastLine) >= time.Second {
			lastLine = time.Now()
			progress(fmt.Sprintf("%5.1fs after the last login: %d of %d users see everyone (%d streams broke; the others' counts off by: %v)", time.Since(last).Seconds(), seen, len(users), broken, off))
		}
		if time.Now().After(deadline) {
			return res
		}
		select {
		case <-ctx.Done():
			return res
		case <-tick.C:
		}
	}
}

// heapStats reads each replica's heap after a GC (pprof's heap profile
// with debug=1 ends with runtime.MemStats) and its goroutine count; -1
// for one that did not answer.
func heapStats(ctx context.Context, bases []string) (heap, stack, goroutines []int64) {
	var mu sync.Mutex
	heap, stack, goroutines = make([]int64, len(bases)), make([]int64, len(bases)), make([]int64, len(bases))
	var wg sync.WaitGroup
	for i, base := range bases {
		wg.Go(func() {
			// Twice: what sync.Pools held before the first GC survives it
			// (their victim cache) and is gone after the second.
			readMemStats(ctx, base)
			h, s, g := readMemStats(ctx, base)
			mu.Lock()
			heap[i], stack[i], goroutines[i] = h, s, g
			mu.Unlock()
		})
	}
	wg.Wait()
	return heap, stack, goroutines
}

func readMemStats(ctx context.Context, base string) (heap, stack, goroutines int64) {
	heap, stack, goroutines = -1, -1, -1
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	get := func(path string, each func(line string)) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			each(sc.Text())
		}
	}
	field := func(line, name string) (int64, bool) {
		v, ok := strings.CutPrefix(line, "# "+name+" = ")
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		return n, err == nil
	}
	get("/debug/pprof/heap?debug=1&gc=1", func(line string) {
		if n, ok := field(line, "HeapAlloc"); ok {
			heap = n
		}
		// "# Stack = <in use> / <from the OS>"
		if v, ok := strings.CutPrefix(line, "# Stack = "); ok {
			if f := strings.Fields(v); len(f) > 0 {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					stack = n
				}
			}
		}
	})
	get("/debug/pprof/goroutine?debug=1", func(line string) {
		if v, ok := strings.CutPrefix(line, "goroutine profile: total "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				goroutines = n
			}
		}
	})
	return heap, stack, goroutines
}
