//go:build !linux

package rawconn

import (
	"net"
	"time"
)

// Wrap returns c unchanged: outside Linux reads and writes keep the
// standard path.
func Wrap(c net.Conn) net.Conn { return c }

func setUserTimeout(*net.TCPConn, time.Duration) {}
