//go:build !linux

package udpbatch

import "net"

// Without Linux's UDP_SEGMENT every packet is its own message.
func gsoSupported(*net.UDPConn) bool { return false }

const gsoOOBSize = 0

func putGSO([]byte, int) {}

func isGSOError(error) bool { return false }
