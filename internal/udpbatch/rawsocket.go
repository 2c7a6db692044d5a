//go:build linux && (amd64 || arm64)

package udpbatch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// rawSocket makes the edge socket's sends and reads raw system calls, ones
// the Go scheduler is not told about. The socket is non-blocking, so no call
// waits: when it would (EAGAIN), a send goes the usual way and a read waits
// in the poller (syscall.RawConn.Read).
//
// Sends: the flusher's sendmmsg. A batch to a few hundred players keeps the
// kernel busy for longer than the scheduler's monitor allows a thread in a
// system call: it would hand the thread's processor to another thread
// (waking it), and the sender would queue for a processor again on its way
// out, a pair of thread switches per batch and a monitor that keeps polling
// every 20 µs.
//
// Reads: a read through the runtime's syscall entry wakes the scheduler's
// monitor whenever it sleeps, and it sleeps whenever the edge has been idle
// for an instant, between two frames, so every frame paid for a wake of the
// monitor and a millisecond of its 20 µs polls.
type rawSocket struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	// from is the sender's address of the read in progress; RawConn.Read
	// lets one read run at a time.
	from    unix.RawSockaddrInet4
	fromLen uint32
}

// mmsghdr is the kernel's struct mmsghdr on 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func newRawSocket(c *net.UDPConn) *rawSocket {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawSocket{rc: rc, hdrs: make([]mmsghdr, batchSize), iovs: make([]unix.Iovec, batchSize),
		names: make([]unix.RawSockaddrInet4, batchSize)}
}

// send sends msgs (IPv4 destinations, at most batchSize packets in all)
// and returns how many went, as sendmmsg does. ok is false when the batch
// must go the usual way: the socket's buffer is full, or msgs are not what
// the batch builds.
func (r *rawSocket) send(msgs []ipv4.Message) (n int, ok bool, err error) {
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

// recv reads one datagram into b.
func (r *rawSocket) recv(b []byte) (int, netip.AddrPort, error) {
	var (
		n     uintptr
		errno syscall.Errno
	)
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			r.fromLen = unix.SizeofSockaddrInet4
			n, _, errno = unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0,
				uintptr(unsafe.Pointer(&r.from)), uintptr(unsafe.Pointer(&r.fromLen)))
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			return true
		}
	})
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if errno != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvfrom", errno)}
	}
	var from netip.AddrPort
	if r.from.Family == unix.AF_INET {
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&r.from.Port))[:])
		from = netip.AddrPortFrom(netip.AddrFrom4(r.from.Addr), port)
	}
	return int(n), from, nil
}
