package udpgro

import (
	"encoding/binary"
	"net"

	"golang.org/x/sys/unix"
)

// oobSize holds the UDP_GRO control message (an int).
var oobSize = unix.CmsgSpace(4)

// enableGRO turns UDP_GRO on for c and reports whether the kernel took it.
func enableGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		ok = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	return ok
}

// segmentSize is the segment size in a read's control messages, or 0 when
// the read is one datagram.
func segmentSize(oob []byte) int {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO {
			switch {
			case len(data) >= 4:
				return int(binary.NativeEndian.Uint32(data))
			case len(data) >= 2:
				return int(binary.NativeEndian.Uint16(data))
			}
		}
		oob = rest
	}
	return 0
}
