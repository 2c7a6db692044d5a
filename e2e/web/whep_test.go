package web

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/bench/netshape"
	"github.com/onair-dev/onair/bench/viewer"
	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/whipclient"
)

// whepPlayer is a Go WHEP player as a browser is one: pion with NACK,
// receiver reports and transport-wide congestion control feedback (which
// the edge's bandwidth estimate for it is made of), its video measured by
// a viewer.Meter (the picture size of the keyframes it renders is the
// layer it gets). On a netshape.Net its one UDP socket is on a pinned
// port, so a tc class for that port caps its link.
type whepPlayer struct {
	name  string
	pc    *webrtc.PeerConnection
	meter *viewer.Meter
	loc   string
}

// playWHEP plays streamID through the gateway's WHEP endpoint, with
// ?layer= when layer is not "", on n's sockets when n is not nil.
func (s *server) playWHEP(t *testing.T, name, streamID, layer string, n *netshape.Net) *whepPlayer {
	t.Helper()
	se := webrtc.SettingEngine{}
	iceloopback.Restrict(&se)
	if n != nil {
		se.SetNet(n)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	for _, f := range []func() error{
		func() error { return webrtc.ConfigureNack(m, ir) },
		func() error { return webrtc.ConfigureRTCPReports(ir) },
		func() error { return webrtc.ConfigureTWCCSender(m, ir) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &whepPlayer{name: name, pc: pc, meter: viewer.NewMeter()}
	t.Cleanup(func() {
		whipclient.Delete(p.loc)
		_ = pc.Close()
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			// Ask for a keyframe when the picture is stuck, as a browser
			// does: a frame lost for good is otherwise never replaced.
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			go p.meter.AskKeyframes(ctx, func() {
				_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
			})
		}
		var pkt rtp.Packet
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return // the connection closed
			}
			if tr.Kind() != webrtc.RTPCodecTypeVideo || pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			p.meter.Packet(&pkt, time.Now())
		}
	})
	target := fmt.Sprintf("%s/whep/%d/%s", s.url, testcluster.AppID, streamID)
	if layer != "" {
		target += "?layer=" + layer
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if p.loc, err = whipclient.Post(ctx, pc, target, s.Token(name, nil)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

// size is the picture size of the keyframes the player renders now
// ("" before the first).
func (p *whepPlayer) size() string {
	r := p.meter.Report(time.Now())
	if r.Width == 0 {
		return ""
	}
	return fmt.Sprintf("%dx%d", r.Width, r.Height)
}

// freeUDPPort is a UDP port on 127.0.0.1 nothing holds now, for a player
// to pin.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
