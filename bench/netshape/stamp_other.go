//go:build !linux

package netshape

import (
	"net"
	"time"
)

// oobSize: no control messages are read off Linux.
const oobSize = 0

// enableTimestamps: arrival times are taken when a datagram is read.
func enableTimestamps(*net.UDPConn) bool { return false }

func arrival([]byte) (time.Time, bool) { return time.Time{}, false }
