package sfu

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func marshalRTCP(t testing.TB, pkts ...rtcp.Packet) []byte {
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRTCP(t *testing.T) {
	const me, other = 0x1234, 0x9999
	tests := []struct {
		name      string
		pkts      []rtcp.Packet
		wantNacks []uint16
		wantKey   bool
		wantLost  uint8
		report    bool
	}{
		{"NACK with bitmask", []rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: me,
			Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 0b101}}}}, []uint16{100, 101, 103}, false, 0, false},
		{"NACK across wrap", []rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: me,
			Nacks: []rtcp.NackPair{{PacketID: 65535, LostPackets: 1}}}}, []uint16{65535, 0}, false, 0, false},
		{"NACK for another SSRC", []rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: other,
			Nacks: []rtcp.NackPair{{PacketID: 1}}}}, nil, false, 0, false},
		{"PLI", []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: me}}, nil, true, 0, false},
		{"FIR", []rtcp.Packet{&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: me, SequenceNumber: 1}}}}, nil, true, 0, false},
		{"PLI for another SSRC", []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: other}}, nil, false, 0, false},
		{"compound: RR then NACK", []rtcp.Packet{
			&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: other, FractionLost: 9}, {SSRC: me, FractionLost: 64, TotalLost: 7, Jitter: 30}}},
			&rtcp.TransportLayerNack{MediaSSRC: me, Nacks: []rtcp.NackPair{{PacketID: 5}}},
		}, []uint16{5}, false, 64, true},
		{"SR with a report block", []rtcp.Packet{&rtcp.SenderReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: me, FractionLost: 3}}}},
			nil, false, 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f rtcpFeedback
			if !parseRTCP(marshalRTCP(t, tc.pkts...), me, &f) {
				t.Fatal("not parsed")
			}
			if got := f.nacks[:f.numNacks]; !slices.Equal(got, tc.wantNacks) && len(got)+len(tc.wantNacks) > 0 {
				t.Errorf("nacks %v, want %v", got, tc.wantNacks)
			}
			if f.keyframe != tc.wantKey || f.report != tc.report || f.fractionLost != tc.wantLost {
				t.Errorf("keyframe %v report %v lost %d", f.keyframe, f.report, f.fractionLost)
			}
		})
	}
	var f rtcpFeedback
	if parseRTCP([]byte{0x80, 201, 0, 9}, me, &f) {
		t.Error("a truncated packet parsed")
	}
}

func TestRTTFromReport(t *testing.T) {
	now := ntpTime(time.Unix(1000, 0))
	mid := uint32(now >> 16)
	lsr := mid - 65536/10      // our SR left 100 ms ago
	dlsr := uint32(65536 / 20) // the player held it 50 ms
	rtt := rttFromReport(mid, lsr, dlsr)
	if rtt < 49*time.Millisecond || rtt > 51*time.Millisecond {
		t.Fatalf("rtt %v, want 50ms", rtt)
	}
	if rttFromReport(mid, 0, 0) != 0 {
		t.Fatal("an RR without LSR gave an RTT")
	}
}

func TestParseRTP(t *testing.T) {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 96, SequenceNumber: 65535, Timestamp: 0xfffffff0,
		SSRC: 7, CSRC: []uint32{1, 2}}, Payload: []byte("payload"), PaddingSize: 3}
	p.Header.Padding = true
	if err := p.SetExtension(3, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h, ok := parseRTP(b)
	if !ok || !h.marker || h.pt != 96 || h.seq != 65535 || h.ts != 0xfffffff0 || h.ssrc != 7 || string(b[h.start:h.end]) != "payload" {
		t.Fatalf("parsed %+v ok %v payload %q", h, ok, b[h.start:h.end])
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, ok := parseRTP(bad); ok {
			t.Errorf("parsed % x", bad)
		}
	}
}

func FuzzParseRTP(f *testing.F) {
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1}, Payload: []byte{1, 2, 3}}).Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := parseRTP(b)
		if ok && (h.start > h.end || h.end > len(b)) {
			t.Fatalf("payload bounds %d..%d of %d", h.start, h.end, len(b))
		}
	})
}

func FuzzParseRTCP(f *testing.F) {
	f.Add(marshalRTCP(f, &rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 0xffff}}}))
	f.Add(marshalRTCP(f, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 1}}}, &rtcp.PictureLossIndication{MediaSSRC: 1}))
	f.Add(marshalRTCP(f, &rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: 1}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fb rtcpFeedback
		parseRTCP(b, 1, &fb)
		if fb.numNacks > len(fb.nacks) {
			t.Fatal("nack overflow")
		}
	})
}

// TestParseRTCPCongestionFeedback: transport-cc feedback and REMB are found
// for the SSRC asked about (or any, with 0), and the feedback is handed on
// whole, padding included, so the estimator can parse it again: pion pads
// its transport-cc packets, and a trimmed one fails the estimator's length
// check (every feedback from a pion player was lost that way).
func TestParseRTCPCongestionFeedback(t *testing.T) {
	const me, other = 0x1234, 0x9999
	// Feedback as a pion player's TWCC interceptor builds it (padded).
	rec := twcc.NewRecorder(1)
	for i, seq := range []uint16{7, 8, 10} {
		rec.Record(me, seq, int64(1000+i*250))
	}
	first := rec.BuildFeedbackPacket()[0]
	// A second feedback, about later packets, in the same compound packet.
	rec2 := twcc.NewRecorder(1)
	for i, seq := range []uint16{11, 12} {
		rec2.Record(me, seq, int64(2000+i*250))
	}
	twcc2 := rec2.BuildFeedbackPacket()[0]
	remb := &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 750_000, SSRCs: []uint32{me}}
	tests := []struct {
		name     string
		ssrc     uint32
		pkts     []rtcp.Packet
		bases    []uint16 // the feedback packets found, by base sequence number
		wantREMB bool
	}{
		{"transport-cc for me", me, []rtcp.Packet{first}, []uint16{7}, false},
		{"transport-cc for another SSRC", other, []rtcp.Packet{first}, nil, false},
		{"transport-cc, any SSRC", 0, []rtcp.Packet{first}, []uint16{7}, false},
		{"REMB naming me", me, []rtcp.Packet{remb}, nil, true},
		{"REMB not naming me", other, []rtcp.Packet{remb}, nil, false},
		{"compound: RR, transport-cc, REMB", me, []rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}, first, remb}, []uint16{7}, true},
		{"compound: two transport-cc, every one kept", me, []rtcp.Packet{first, &rtcp.ReceiverReport{SSRC: 1}, twcc2}, []uint16{7, 11}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := marshalRTCP(t, tt.pkts...)
			var fb rtcpFeedback
			parseRTCP(b, tt.ssrc, &fb)
			if fb.numTWCC != len(tt.bases) {
				t.Fatalf("transport-cc found: %d, want %d", fb.numTWCC, len(tt.bases))
			}
			for i, got := range fb.twcc[:fb.numTWCC] {
				if got[0]&0x20 != 0 {
					if want := 4 * (int(got[2])<<8 | int(got[3]) + 1); len(got) != want {
						t.Fatalf("padded feedback handed on as %d bytes, its header says %d", len(got), want)
					}
				}
				var p rtcp.TransportLayerCC
				if err := p.Unmarshal(got); err != nil || p.BaseSequenceNumber != tt.bases[i] {
					t.Fatalf("feedback %d handed on does not parse again: %v (base %d, want %d)", i, err, p.BaseSequenceNumber, tt.bases[i])
				}
			}
			if got := fb.remb == 750_000; got != tt.wantREMB {
				t.Fatalf("REMB %d, want found %v", fb.remb, tt.wantREMB)
			}
		})
	}
}
