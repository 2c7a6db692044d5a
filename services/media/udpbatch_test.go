package media

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// Every packet queued on a batchConn, from many goroutines and more than a
// batch at once, arrives whole; writes after Close fail.
func TestBatchConnDeliversEveryPacket(t *testing.T) {
	src, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	bc := newBatchConn(src)
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	_ = dst.SetReadBuffer(4 << 20)
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	const writers, each = 8, 3 * batchSize
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			b := make([]byte, 1200)
			for i := range each {
				binary.BigEndian.PutUint32(b, uint32(w*each+i))
				b[len(b)-1] = byte(i)
				if n, err := bc.WriteToAddrPort(b, to); err != nil || n != len(b) {
					t.Errorf("write: %d, %v", n, err)
					return
				}
			}
		})
	}
	seen := map[uint32]bool{}
	buf := make([]byte, 2000)
	_ = dst.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(seen) < writers*each {
		n, _, err := dst.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d of %d packets arrived: %v", len(seen), writers*each, err)
		}
		id := binary.BigEndian.Uint32(buf)
		if n != 1200 || buf[n-1] != byte(int(id)%each) || seen[id] {
			t.Fatalf("packet %d: %d bytes, last byte %d, seen before %v", id, n, buf[n-1], seen[id])
		}
		seen[id] = true
	}
	wg.Wait()
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bc.packets.Load(); got != writers*each {
		t.Errorf("%d packets counted as sent, want %d", got, writers*each)
	}
	if _, err := bc.WriteToAddrPort(buf[:10], to); err == nil {
		t.Error("a write after Close succeeded")
	}
}
