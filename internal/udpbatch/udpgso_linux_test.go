package udpbatch

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A socket whose path refuses segmentation (here: UDP checksums off,
// which the kernel will not segment) loses nothing: the batch goes out a
// packet per message and GSO stays off.
func TestBatchConnFallsBackWithoutGSO(t *testing.T) {
	src := loopbackUDP(t)
	rc, err := src.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) }); err != nil || serr != nil {
		t.Skipf("SO_NO_CHECK: %v %v", err, serr)
	}
	bc := New(src)
	defer bc.Close()
	if !bc.gso.Load() {
		t.Skip("no UDP GSO on this kernel")
	}
	dst := loopbackUDP(t)
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	// Queue a whole frame before the flusher can send it, so it coalesces.
	bc.sendMu.Lock()
	b := make([]byte, 1000)
	const n = 10
	for i := range n {
		b[0] = byte(i)
		if _, err := bc.WriteToAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
	}
	bc.sendMu.Unlock()
	bc.flush()
	buf := make([]byte, 2000)
	_ = dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		m, _, err := dst.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d of %d packets arrived: %v", i, n, err)
		}
		if m != len(b) || buf[0] != byte(i) {
			t.Fatalf("packet %d: %d bytes, first byte %d", i, m, buf[0])
		}
	}
	if bc.gso.Load() {
		t.Error("GSO still on after the kernel refused to segment")
	}
	if got := bc.packets.Load(); got != n {
		t.Errorf("%d packets counted as sent, want %d", got, n)
	}
}
