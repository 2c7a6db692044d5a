//go:build !linux

package udpgro

import "net"

// oobSize is unused where GRO is not offered.
const oobSize = 0

// enableGRO reports that GRO is not offered.
func enableGRO(*net.UDPConn) bool { return false }

// segmentSize is never called where GRO is not offered.
func segmentSize([]byte) int { return 0 }
