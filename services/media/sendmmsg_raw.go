//go:build linux && (amd64 || arm64)

package media

import (
	"encoding/binary"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// rawSender makes the flusher's sendmmsg a raw system call, one the Go
// scheduler is not told about. A batch to a few hundred players keeps the
// kernel busy for longer than the scheduler's monitor allows a thread in a
// system call: it would hand the thread's processor to another thread
// (waking it), and the sender would queue for a processor again on its way
// out, a pair of thread switches per batch and a monitor that keeps polling
// every 20 µs. The socket is non-blocking, so the call never waits; when
// the socket's buffer is full (EAGAIN) the batch goes the usual way, which
// waits in the poller.
type rawSender struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
}

// mmsghdr is the kernel's struct mmsghdr on 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func newRawSender(c *net.UDPConn) *rawSender {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawSender{rc: rc, hdrs: make([]mmsghdr, batchSize), iovs: make([]unix.Iovec, batchSize),
		names: make([]unix.RawSockaddrInet4, batchSize)}
}

// send sends msgs (IPv4 destinations, at most batchSize packets in all)
// and returns how many went, as sendmmsg does. ok is false when the batch
// must go the usual way: the socket's buffer is full, or msgs are not what
// the batch builds.
func (r *rawSender) send(msgs []ipv4.Message) (n int, ok bool, err error) {
	if len(msgs) > len(r.hdrs) {
		return 0, false, nil
	}
	k := 0
	for i := range msgs {
		m := &msgs[i]
		ua, isUDP := m.Addr.(*net.UDPAddr)
		if !isUDP || len(ua.IP) != 4 || k+len(m.Buffers) > len(r.iovs) {
			return 0, false, nil
		}
		sa := &r.names[i]
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], uint16(ua.Port))
		copy(sa.Addr[:], ua.IP)
		h := &r.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(sa))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &r.iovs[k]
		h.SetIovlen(len(m.Buffers))
		for _, b := range m.Buffers {
			r.iovs[k].Base = unsafe.SliceData(b)
			r.iovs[k].SetLen(len(b))
			k++
		}
		h.Control, h.Controllen = nil, 0
		if len(m.OOB) > 0 {
			h.Control = unsafe.SliceData(m.OOB)
			h.SetControllen(len(m.OOB))
		}
	}
	var sent uintptr
	var errno syscall.Errno
	if cerr := r.rc.Control(func(fd uintptr) {
		sent, _, errno = unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(msgs)), 0, 0, 0)
	}); cerr != nil {
		return 0, true, cerr
	}
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return 0, false, nil
	case errno != 0:
		return 0, true, errno
	}
	return int(sent), true, nil
}
