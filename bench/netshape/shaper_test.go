//go:build linux

package netshape

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// inNamespace is set in the environment of the test binary re-run under
// `unshare -n`.
const inNamespace = "NETSHAPE_TEST_IN_NAMESPACE"

// TestShaper runs the test binary again in a network namespace of its own
// (`unshare -n`), where shaping is allowed, and passes if that run passes.
func TestShaper(t *testing.T) {
	if os.Getenv(inNamespace) != "" {
		shaperInNamespace(t)
		return
	}
	if err := CheckNamespace(); err == nil {
		t.Log("already in a namespace with only lo")
		shaperInNamespace(t)
		return
	}
	if _, err := NewShaper(context.Background()); err == nil || !strings.Contains(err.Error(), "only interface") {
		t.Fatalf("NewShaper outside a loopback-only namespace: %v, want a refusal", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("shaping needs root (to create a network namespace and run tc); skipped")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed; skipped")
	}
	for _, tool := range []string{"tc", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (iproute2) is not installed: %v", tool, err)
		}
	}
	cmd := exec.Command(unshare, "-n", os.Args[0], "-test.run=^TestShaper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNamespace+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the run in a new network namespace failed: %v", err)
	}
}

// shaperInNamespace checks that a capped port receives about its cap while
// an uncapped one does not, and that a rate change takes.
func shaperInNamespace(t *testing.T) {
	ctx := context.Background()
	if err := CheckNamespace(); err != nil {
		t.Fatal(err)
	}
	s, err := NewShaper(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	capped, free := listen(t), listen(t)
	defer capped.Close()
	defer free.Close()
	port := capped.LocalAddr().(*net.UDPAddr).Port
	if err := s.SetRate(ctx, port, 1_000_000); err != nil {
		t.Fatal(err)
	}
	const window = 1500 * time.Millisecond
	// A functional check with generous bounds, not a timing assertion: 8
	// Mbit/s offered, 1 Mbit/s let through (plus the queue of 200 ms it
	// holds at the end of the window).
	got := offer(t, capped, 8_000_000, window)
	limit := int64(1_000_000/8*(window+QueueTime)/time.Second) * 3 / 2
	t.Logf("capped at 1mbit: %d bytes in %v (limit %d)", got, window, limit)
	if got == 0 || got > limit {
		t.Errorf("a port capped at 1mbit received %d bytes in %v, want 1-%d", got, window, limit)
	}
	if other := offer(t, free, 8_000_000, window); other < 3*limit {
		t.Errorf("an unshaped port received %d bytes in %v, want far more than the capped one", other, window)
	}
	if err := s.SetRate(ctx, port, 300_000); err != nil {
		t.Fatal(err)
	}
	slower := offer(t, capped, 8_000_000, window)
	limit = int64(300_000/8*(window+QueueTime)/time.Second) * 3 / 2
	t.Logf("changed to 300kbit: %d bytes in %v (limit %d)", slower, window, limit)
	if slower == 0 || slower > limit {
		t.Errorf("after a change to 300kbit the port received %d bytes, want 1-%d", slower, limit)
	}
	// The edge sends trains of datagrams with UDP GSO: the queue (8000 bytes
	// at 300kbit) must take them as datagrams, not drop a 12000-byte train
	// whole.
	trains := offerGSO(t, capped, 8_000_000, window)
	t.Logf("GSO trains at 300kbit: %d bytes in %v (limit %d)", trains, window, limit)
	if trains == 0 || trains > limit {
		t.Errorf("GSO trains to a port capped at 300kbit: %d bytes received, want 1-%d", trains, limit)
	}
	if _, _, dropped, err := s.Stats(ctx, port); err != nil || dropped == 0 {
		t.Errorf("the capped queue dropped %d packets (%v): it should have overflowed", dropped, err)
	}
}

// offer sends 1200-byte datagrams to c at bps for d and returns the bytes
// c read in that time.
func offer(t *testing.T, c *net.UDPConn, bps int64, d time.Duration) int64 {
	t.Helper()
	src := listen(t)
	defer src.Close()
	msg := make([]byte, 1200)
	return measure(t, c, bps, d, func() int {
		_, _ = src.WriteToUDP(msg, c.LocalAddr().(*net.UDPAddr))
		return len(msg)
	})
}

// offerGSO is offer with trains of ten 1200-byte datagrams sent as one
// UDP_SEGMENT message each.
func offerGSO(t *testing.T, c *net.UDPConn, bps int64, d time.Duration) int64 {
	t.Helper()
	src := listen(t)
	defer src.Close()
	train := make([]byte, 10*1200)
	oob := make([]byte, syscall.CmsgSpace(2))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = syscall.IPPROTO_UDP, 103 // UDP_SEGMENT
	h.SetLen(syscall.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[syscall.CmsgLen(0):], 1200)
	if _, _, err := src.WriteMsgUDP(train, oob, c.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Skipf("this kernel does not send UDP_SEGMENT: %v", err)
	}
	return measure(t, c, bps, d, func() int {
		_, _, _ = src.WriteMsgUDP(train, oob, c.LocalAddr().(*net.UDPAddr))
		return len(train)
	})
}

// measure calls send at bps for d and returns the bytes c read meanwhile.
func measure(t *testing.T, c *net.UDPConn, bps int64, d time.Duration, send func() int) int64 {
	t.Helper()
	total := make(chan int64)
	go func() {
		var n int64
		buf := make([]byte, 2048)
		for {
			k, _, err := c.ReadFromUDP(buf)
			if err != nil {
				total <- n
				return
			}
			n += int64(k)
		}
	}()
	start := time.Now()
	var sent int64
	for time.Since(start) < d {
		sent += int64(send())
		time.Sleep(time.Until(start.Add(time.Duration(sent * 8 * int64(time.Second) / bps))))
	}
	_ = c.SetReadDeadline(time.Now())
	n := <-total
	_ = c.SetReadDeadline(time.Time{})
	// Drain what the queue still held, so the next measurement starts clean.
	time.Sleep(QueueTime)
	_ = c.SetReadDeadline(time.Now().Add(QueueTime))
	buf := make([]byte, 2048)
	for {
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return n
}
