package udpbatch

import (
	"encoding/binary"
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoSupported reports whether the kernel takes UDP_SEGMENT on c (Linux
// 4.18 on): one sendmmsg message may then carry many packets to one
// destination, and the stack does the per-packet work once per message.
func gsoSupported(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	return ok
}

// gsoOOBSize is the size of a UDP_SEGMENT control message.
var gsoOOBSize = unix.CmsgSpace(2)

// putGSO writes a UDP_SEGMENT control message for segments of size into
// oob: gsoOOBSize bytes, 8-byte aligned (a slot of a make([]byte) whose
// slots are gsoOOBSize apart).
func putGSO(oob []byte, size int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
}

// isGSOError reports whether err says the path cannot segment (EIO: the
// device has no checksum offload; EINVAL: a segment count or size the
// kernel refuses), so the edge stops using GSO.
func isGSOError(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)
}
