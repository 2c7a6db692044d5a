// Package procstat reads a process's CPU time and resident memory from
// Linux's /proc, for the benchmarks that charge a server's work per unit
// of load (onair bench).
package procstat

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on every
// Linux build Go runs on).
const userHZ = 100

// Read returns the CPU time (user+system) pid has used so far and its
// resident set size in bytes; zeros if pid is not positive or its
// /proc/<pid>/stat cannot be read (another OS, a process gone).
func Read(pid int) (cpu time.Duration, rss int64) {
	if pid <= 0 {
		return 0, 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	return parse(b)
}

// parse reads /proc/<pid>/stat's fields after the command name, which may
// itself hold spaces and parentheses (hence the last ')').
func parse(b []byte) (time.Duration, int64) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return 0, 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return time.Duration(ut+st) * time.Second / userHZ, rss * int64(os.Getpagesize())
}

// CPU is the CPU time each of pids has used so far, in their order.
func CPU(pids []int) []time.Duration {
	t := make([]time.Duration, len(pids))
	for i, p := range pids {
		t[i], _ = Read(p)
	}
	return t
}
