package express

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Simulcast publishing. A MediaSource gives a video track as layers by
// returning several TrackLocals with the same ID, stream ID and kind and
// different RIDs (pion: webrtc.WithRTPStreamID), lowest first as browsers
// list them with sendEncodings ("q", "h", "f"). The SDK sends them as the
// encodings of one sender; the edge forwards each player the layer that
// fits it.

// LayerKeyframeRequester is implemented by sources with simulcast layers
// that can make a keyframe on one layer: the SDK calls it with the RID of
// the layer the edge asks a keyframe of (PLI/FIR on that layer's SSRC).
// Sources without it get RequestKeyframe (KeyframeRequester) instead.
type LayerKeyframeRequester interface {
	RequestLayerKeyframe(rid string)
}

// sentTrack is one sender of a publisher's peer connection and the RIDs
// of its encodings ("" without simulcast).
type sentTrack struct {
	tr    *webrtc.RTPTransceiver
	first webrtc.TrackLocal
	rids  []string
}

func (s *sentTrack) simulcast() bool { return len(s.rids) > 1 }

// addTracks adds a source's tracks to pc: a track that is another layer
// (same ID, stream ID and kind, another RID) of one added before becomes
// an encoding of its sender. The simulcast senders' SSRCs are given to
// ids, which stamps their packets with the mid and RID the edge needs to
// tell the layers apart.
func addTracks(pc *webrtc.PeerConnection, tracks []webrtc.TrackLocal, ids *simulcastIDs) ([]*sentTrack, error) {
	var out []*sentTrack
	for _, t := range tracks {
		if t.RID() != "" {
			var base *sentTrack
			for _, s := range out {
				f := s.first
				if f.RID() != "" && f.ID() == t.ID() && f.StreamID() == t.StreamID() && f.Kind() == t.Kind() {
					base = s
					break
				}
			}
			if base != nil {
				if err := base.tr.Sender().AddEncoding(t); err != nil {
					return nil, err
				}
				base.rids = append(base.rids, t.RID())
				continue
			}
		}
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, err
		}
		out = append(out, &sentTrack{tr: tr, first: t, rids: []string{t.RID()}})
	}
	for _, s := range out {
		if !s.simulcast() {
			continue
		}
		for _, enc := range s.tr.Sender().GetParameters().Encodings {
			ids.add(uint32(enc.SSRC), s.tr, enc.RID)
		}
	}
	return out, nil
}

// readKeyframeRequests reads the edge's RTCP about s until the sender
// stops and passes keyframe requests to the source: per layer for a
// simulcast sender (each encoding's RTCP arrives on its own), to the
// layer's source when it can make one for a layer.
func readKeyframeRequests(s *sentTrack, source MediaSource) {
	kf, _ := source.(KeyframeRequester)
	lkf, _ := source.(LayerKeyframeRequester)
	isKeyReq := func(pkts []rtcp.Packet) bool {
		for _, pk := range pkts {
			switch pk.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				return true
			}
		}
		return false
	}
	sender := s.tr.Sender()
	if !s.simulcast() {
		go func() {
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				if isKeyReq(pkts) && kf != nil {
					kf.RequestKeyframe()
				}
			}
		}()
		return
	}
	for _, rid := range s.rids {
		go func() {
			for {
				pkts, _, err := sender.ReadSimulcastRTCP(rid)
				if err != nil {
					return
				}
				if !isKeyReq(pkts) {
					continue
				}
				switch {
				case lkf != nil:
					lkf.RequestLayerKeyframe(rid)
				case kf != nil:
					kf.RequestKeyframe()
				}
			}
		}()
	}
}

// simulcastIDs stamps the packets of a publisher's simulcast layers with
// the mid and RID header extensions (the repaired RID on retransmissions).
// A simulcast offer names its layers by RID only, not by SSRC, so the
// edge's pion tells them apart by these extensions; pion's sender does not
// add them itself. It is an interceptor factory, registered first so that
// it sees what every other interceptor sends (the NACK responder's RTX).
type simulcastIDs struct {
	mu     sync.Mutex
	layers map[uint32]layerID // by media SSRC
}

type layerID struct {
	tr  *webrtc.RTPTransceiver
	rid string
}

func (s *simulcastIDs) add(ssrc uint32, tr *webrtc.RTPTransceiver, rid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.layers == nil {
		s.layers = map[uint32]layerID{}
	}
	s.layers[ssrc] = layerID{tr: tr, rid: rid}
}

func (s *simulcastIDs) lookup(ssrc uint32) (layerID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.layers[ssrc]
	return l, ok
}

// NewInterceptor: interceptor.Factory.
func (s *simulcastIDs) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &ridStamper{ids: s}, nil
}

type ridStamper struct {
	interceptor.NoOp
	ids *simulcastIDs
}

// BindLocalStream runs at the sender's start (after negotiation), when
// the transceiver's mid is known.
func (r *ridStamper) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	l, ok := r.ids.lookup(info.SSRC)
	if !ok {
		return w
	}
	var midID, ridID, rridID uint8
	for _, e := range info.RTPHeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		case sdp.SDESRepairRTPStreamIDURI:
			rridID = uint8(e.ID)
		}
	}
	mid, rid := []byte(l.tr.Mid()), []byte(l.rid)
	if midID == 0 || ridID == 0 || len(mid) == 0 {
		return w // not negotiated: the edge cannot take simulcast anyway
	}
	rtxSSRC := info.SSRCRetransmission
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		_ = h.SetExtension(midID, mid)
		switch {
		case h.SSRC == info.SSRC:
			_ = h.SetExtension(ridID, rid)
		case rtxSSRC != 0 && h.SSRC == rtxSSRC && rridID != 0:
			_ = h.SetExtension(rridID, rid)
		}
		return w.Write(h, payload, a)
	})
}
