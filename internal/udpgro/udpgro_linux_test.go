package udpgro

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendGSO sends payloads to to as one UDP_SEGMENT message of segment-sized
// datagrams, as the OnAir edge does.
func sendGSO(t *testing.T, c *net.UDPConn, to *net.UDPAddr, segment int, payloads [][]byte) {
	t.Helper()
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(segment))
	if _, _, err := c.WriteMsgUDP(bytes.Join(payloads, nil), oob, to); err != nil {
		t.Skipf("this kernel does not send UDP_SEGMENT: %v", err)
	}
}

func payloads(sizes ...int) [][]byte {
	var ps [][]byte
	for i, n := range sizes {
		ps = append(ps, bytes.Repeat([]byte{byte(i + 1)}, n))
	}
	return ps
}

// A GRO socket returns a GSO train as the datagrams it was made of, in
// order, and plain datagrams as they are.
func TestReadSplitsTrains(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segment int // 0: plain datagrams, one write each
		sizes   []int
	}{
		{"one datagram", 0, []int{1200}},
		{"plain datagrams of different sizes", 0, []int{1200, 80, 1200}},
		{"train of equal segments", 1200, []int{1200, 1200, 1200}},
		{"train with a shorter last segment", 1200, []int{1200, 1200, 333}},
		{"train of one", 900, []int{900}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NewNet()
			if err != nil {
				t.Fatal(err)
			}
			rc, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if _, ok := rc.(*Conn); !ok {
				t.Skip("this kernel does not take UDP_GRO")
			}
			sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			to := rc.LocalAddr().(*net.UDPAddr)
			want := payloads(tc.sizes...)
			if tc.segment > 0 {
				sendGSO(t, sc, to, tc.segment, want)
			} else {
				for _, p := range want {
					if _, err := sc.WriteToUDP(p, to); err != nil {
						t.Fatal(err)
					}
				}
			}
			_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1500)
			for i, w := range want {
				n, from, err := rc.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], w) {
					t.Fatalf("datagram %d: %d bytes of %d, want %d of %d", i, n, buf[0], len(w), w[0])
				}
				if i == 0 && tc.segment > 0 {
					// The train came whole: its rest waits in the reader,
					// not in the socket.
					if rest, total := len(rc.(*Conn).pending), len(bytes.Join(want, nil)); rest != total-n {
						t.Fatalf("after the first datagram the reader holds %d bytes of the train, want %d", rest, total-n)
					}
				}
				if from.String() != sc.LocalAddr().String() {
					t.Fatalf("datagram %d from %v, want %v", i, from, sc.LocalAddr())
				}
			}
			_ = rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, _, err := rc.ReadFrom(buf); err == nil {
				t.Fatalf("an extra datagram of %d bytes", n)
			}
		})
	}
}
