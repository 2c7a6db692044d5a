package procstat

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	page := int64(os.Getpagesize())
	for _, tt := range []struct {
		name string
		stat string
		cpu  time.Duration
		rss  int64
	}{
		{"plain", "42 (onair) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 1000000 300 18446744073709551615",
			3 * time.Second, 300 * page},
		{"name with spaces and parens", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 100 9 0",
			30 * time.Millisecond, 9 * page},
		{"truncated", "7 (x) R 1 7", 0, 0},
		{"no name", "garbage", 0, 0},
	} {
		cpu, rss := parse([]byte(tt.stat))
		if cpu != tt.cpu || rss != tt.rss {
			t.Errorf("%s: parse = %v, %d; want %v, %d", tt.name, cpu, rss, tt.cpu, tt.rss)
		}
	}
}

// The test process itself: it has used some CPU and holds some memory.
func TestReadSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	// Spin until the kernel has charged this process a clock tick of CPU
	// (a busy machine may run it for less than a tick in any fixed time).
	var cpu time.Duration
	var rss int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if cpu, rss = Read(os.Getpid()); cpu > 0 {
			break
		}
	}
	if cpu <= 0 || rss <= 0 {
		t.Errorf("Read(self) = %v, %d; want both positive", cpu, rss)
	}
	if c, r := Read(0); c != 0 || r != 0 {
		t.Errorf("Read(0) = %v, %d", c, r)
	}
	if got := CPU([]int{os.Getpid(), -1}); len(got) != 2 || got[0] <= 0 || got[1] != 0 {
		t.Errorf("CPU = %v", got)
	}
}
