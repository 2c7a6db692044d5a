package netshape

import (
	"net"
	"syscall"
	"time"
	"unsafe"
)

// oobSize holds an SCM_TIMESTAMPNS control message.
var oobSize = syscall.CmsgSpace(int(unsafe.Sizeof(syscall.Timespec{})))

// enableTimestamps asks the kernel to stamp each received datagram with its
// arrival time (SO_TIMESTAMPNS).
func enableTimestamps(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		ok = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) == nil
	})
	return ok
}

// arrival is the kernel's arrival time in a read's control messages.
func arrival(oob []byte) (time.Time, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS {
			var ts syscall.Timespec
			b := unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
			if copy(b, m.Data) < len(b) {
				return time.Time{}, false
			}
			return time.Unix(ts.Unix()), true
		}
	}
	return time.Time{}, false
}
