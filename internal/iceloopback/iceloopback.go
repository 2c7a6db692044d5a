// Package iceloopback restricts WebRTC ICE to the loopback interface, for
// tests and for an edge whose public address is a loopback one.
package iceloopback

import (
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// Restrict turns loopback candidates on and filters every other interface
// and address out: IPv4 UDP only, no mDNS.
func Restrict(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool {
		ifc, err := net.InterfaceByName(name)
		return err == nil && ifc.Flags&net.FlagLoopback != 0
	})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}
