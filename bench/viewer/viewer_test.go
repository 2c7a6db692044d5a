package viewer

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// t0 is the tests' clock origin.
var t0 = time.Unix(1_000_000, 0)

const frameGap = time.Second / 30

// sent is one packet of a crafted stream and when it arrives.
type sent struct {
	p  rtp.Packet
	at time.Duration
}

// streamOpts shape a crafted stream: frames at 30 fps, perFrame packets each,
// a keyframe at the given frame indexes with its picture size.
type streamOpts struct {
	frames, perFrame int
	seq0             uint16
	ts0              uint32
	keys             map[int][2]int // frame -> width, height
}

// stream makes the packets of a stream, each frame's packets arriving
// together at its capture time.
func stream(o streamOpts) []sent {
	if o.perFrame == 0 {
		o.perFrame = 3
	}
	if o.keys == nil {
		o.keys = map[int][2]int{0: {1280, 720}}
	}
	var out []sent
	seq := o.seq0
	for f := range o.frames {
		wh, key := o.keys[f]
		for i := range o.perFrame {
			payload := make([]byte, 40)
			if i == 0 {
				payload[0] = 0x90 // X, S, partition 0
				payload[1] = 0x80 // I: a 15-bit picture ID follows
				payload[2], payload[3] = 0x80|byte(f>>8), byte(f)
				vp := payload[4:]
				vp[0] = 0x01 // inter frame
				if key {
					vp[0] = 0x00
					vp[3], vp[4], vp[5] = 0x9d, 0x01, 0x2a
					binary.LittleEndian.PutUint16(vp[6:], uint16(wh[0]))
					binary.LittleEndian.PutUint16(vp[8:], uint16(wh[1]))
				}
			} else {
				payload[0] = 0x80 // X, not a start
				payload[1] = 0x80
				payload[2], payload[3] = 0x80|byte(f>>8), byte(f)
			}
			out = append(out, sent{
				p: rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq,
					Timestamp: o.ts0 + uint32(f*3000), Marker: i == o.perFrame-1, SSRC: 1}, Payload: payload},
				at: time.Duration(f) * frameGap,
			})
			seq++
		}
	}
	return out
}

// without drops the packets at the given indexes.
func without(s []sent, idx ...int) []sent {
	var out []sent
	for i, p := range s {
		if !slices.Contains(idx, i) {
			out = append(out, p)
		}
	}
	return out
}

// late makes packet i arrive d later, in arrival order.
func late(s []sent, i int, d time.Duration) []sent {
	s = slices.Clone(s)
	s[i].at += d
	slices.SortStableFunc(s, func(a, b sent) int { return int(a.at - b.at) })
	return s
}

// gap makes every packet from index i on arrive d later.
func gap(s []sent, i int, d time.Duration) []sent {
	s = slices.Clone(s)
	for j := i; j < len(s); j++ {
		s[j].at += d
	}
	return s
}

// padding inserts a padding-only packet after packet i, renumbering the
// packets after it.
func padding(s []sent, i int) []sent {
	out := slices.Clone(s[:i+1])
	pad := s[i]
	pad.p.SequenceNumber++
	pad.p.Marker, pad.p.Payload = false, nil
	out = append(out, pad)
	for _, p := range s[i+1:] {
		p.p.SequenceNumber++
		out = append(out, p)
	}
	return out
}

func run(s []sent, end time.Duration) Report {
	m := NewMeter()
	m.Start(t0)
	for _, p := range s {
		m.Packet(&p.p, t0.Add(p.at))
	}
	return m.Report(t0.Add(end))
}

func TestMeter(t *testing.T) {
	clean := stream(streamOpts{frames: 30})
	withKey := stream(streamOpts{frames: 30, keys: map[int][2]int{0: {1280, 720}, 20: {1280, 720}}})
	second := 30 * frameGap
	for _, tc := range []struct {
		name string
		in   []sent
		end  time.Duration
		want Report // Window, FPS, Kbps, FreezePct are derived and not compared
	}{
		{
			name: "complete",
			in:   clean, end: second,
			want: Report{Frames: 30, Width: 1280, Height: 720, FirstStable: -1, Packets: 90},
		},
		{
			name: "a packet lost mid-frame breaks the chain until the window ends",
			in:   without(clean, 31), end: second,
			// Frames 0-9 render; the open interval since frame 9 is a freeze.
			want: Report{Frames: 10, Freezes: 1, FreezeTime: second - 9*frameGap, Width: 1280, Height: 720,
				FirstStable: -1, Packets: 89, Lost: 1},
		},
		{
			name: "a keyframe restores the chain",
			in:   without(withKey, 31), end: second,
			// Frames 10-19 are not rendered: one freeze from frame 9 to 20.
			want: Report{Frames: 20, Freezes: 1, FreezeTime: 11 * frameGap, Width: 1280, Height: 720,
				FirstStable: -1, Packets: 89, Lost: 1},
		},
		{
			name: "a retransmission in time fills the hole",
			in:   late(clean, 31, 100*time.Millisecond), end: second,
			want: Report{Frames: 30, Width: 1280, Height: 720, FirstStable: -1, Packets: 90},
		},
		{
			name: "after a late retransmission the playout delay absorbs the next",
			in:   late(late(clean, 31, 250*time.Millisecond), 61, 250*time.Millisecond), end: second,
			want: Report{Frames: 30, Freezes: 1, FreezeTime: frameGap + 250*time.Millisecond, Width: 1280, Height: 720,
				FirstStable: -1, Packets: 90},
		},
		{
			name: "packets reordered within and across frames",
			in:   late(late(clean, 31, 5*time.Millisecond), 45, 40*time.Millisecond), end: second,
			want: Report{Frames: 30, Width: 1280, Height: 720, FirstStable: -1, Packets: 90},
		},
		{
			name: "duplicates count once",
			in:   append(slices.Clone(clean), clean[40], clean[41]), end: second,
			want: Report{Frames: 30, Width: 1280, Height: 720, FirstStable: -1, Packets: 90},
		},
		{
			name: "a gap in arrival is a freeze",
			in:   gap(clean, 45, 500*time.Millisecond), end: second + 500*time.Millisecond,
			want: Report{Frames: 30, Freezes: 1, FreezeTime: frameGap + 500*time.Millisecond, Width: 1280, Height: 720,
				FirstStable: -1, Packets: 90},
		},
		{
			name: "sequence numbers and timestamps wrap",
			in:   stream(streamOpts{frames: 30, seq0: 65500, ts0: 1<<32 - 20000}), end: second,
			want: Report{Frames: 30, Width: 1280, Height: 720, FirstStable: -1, Packets: 90},
		},
		{
			name: "wrap with a loss and a keyframe",
			in:   without(stream(streamOpts{frames: 30, seq0: 65500, keys: map[int][2]int{0: {1280, 720}, 20: {1280, 720}}}), 31),
			end:  second,
			want: Report{Frames: 20, Freezes: 1, FreezeTime: 11 * frameGap, Width: 1280, Height: 720,
				FirstStable: -1, Packets: 89, Lost: 1},
		},
		{
			name: "padding between frames keeps the chain",
			in:   padding(padding(clean, 14), 51), end: second,
			want: Report{Frames: 30, Width: 1280, Height: 720, FirstStable: -1, Packets: 92},
		},
		{
			name: "a layer switch at a keyframe",
			in:   stream(streamOpts{frames: 30, keys: map[int][2]int{0: {1280, 720}, 15: {640, 360}}}), end: second,
			want: Report{Frames: 30, Width: 640, Height: 360, LayerAt: 15 * frameGap, FirstStable: -1, Packets: 90},
		},
		{
			name: "no keyframe, nothing renders",
			in:   stream(streamOpts{frames: 30, keys: map[int][2]int{}}), end: second,
			want: Report{Freezes: 1, FreezeTime: second, FirstStable: -1, Packets: 90},
		},
		{
			name: "stable after five seconds",
			in:   stream(streamOpts{frames: 6 * 30}), end: 6 * second,
			want: Report{Frames: 180, Width: 1280, Height: 720, FirstStable: StableSpan, Packets: 540},
		},
		{
			name: "stable five seconds after the freeze",
			in:   gap(stream(streamOpts{frames: 8 * 30}), 3*30, time.Second), end: 9 * second,
			want: Report{Frames: 240, Freezes: 1, FreezeTime: time.Second + frameGap, Width: 1280, Height: 720,
				FirstStable: second + time.Second + StableSpan, Packets: 720},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(tc.in, tc.end)
			got.Window, got.FPS, got.Kbps, got.FreezePct = 0, 0, 0, 0
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestMeterLayers(t *testing.T) {
	m := NewMeter()
	m.Start(t0)
	for _, p := range stream(streamOpts{frames: 30, keys: map[int][2]int{0: {1280, 720}, 10: {640, 360}, 20: {640, 360}, 25: {320, 180}}}) {
		m.Packet(&p.p, t0.Add(p.at))
	}
	want := []LayerChange{{0, 1280, 720}, {10 * frameGap, 640, 360}, {25 * frameGap, 320, 180}}
	if got := m.Layers(); !slices.Equal(got, want) {
		t.Errorf("Layers() = %v, want %v", got, want)
	}
}

// The window starts at Start: what came before counts for the decoder, not
// the report, and the derived figures follow the counts.
func TestMeterWindow(t *testing.T) {
	s := stream(streamOpts{frames: 60})
	m := NewMeter()
	for _, p := range s[:90] { // the first second: warm-up
		m.Packet(&p.p, t0.Add(p.at))
	}
	start := t0.Add(s[90].at)
	m.Start(start)
	for _, p := range s[90:] {
		m.Packet(&p.p, t0.Add(p.at))
	}
	r := m.Report(start.Add(time.Second))
	if r.Frames != 30 || r.FPS != 30 || r.Packets != 90 || r.Window != time.Second || r.FreezePct != 0 || r.LayerAt != 0 {
		t.Errorf("after a second of warm-up: %+v", r)
	}
	if want := float64(90*(12+40)*8) / 1000; r.Kbps != want {
		t.Errorf("Kbps = %v, want %v", r.Kbps, want)
	}
}

// A frozen second reads as a freeze percentage of the window.
func TestMeterFreezePct(t *testing.T) {
	s := stream(streamOpts{frames: 60})
	r := run(without(s, 91), 2*time.Second) // frame 30 lost: nothing after it renders
	// The picture froze at frame 29, for the rest of the window.
	if want := 100 * (2*time.Second - 29*frameGap).Seconds() / 2; r.FreezePct != want {
		t.Errorf("FreezePct = %.2f, want %.2f", r.FreezePct, want)
	}
}

func TestAggregate(t *testing.T) {
	a := Aggregate([]Report{
		{Window: time.Second, Frames: 30, FPS: 30, Kbps: 100, Width: 1280, Height: 720, FirstStable: time.Second, Packets: 10},
		{Window: time.Second, Frames: 10, FPS: 10, Freezes: 2, FreezeTime: time.Second, FreezePct: 50, Kbps: 50, Width: 320, Height: 180, LayerAt: time.Second, FirstStable: 3 * time.Second, Packets: 5, Lost: 1},
	})
	want := Report{Window: time.Second, Frames: 40, FPS: 20, Freezes: 2, FreezeTime: time.Second / 2, FreezePct: 25, Kbps: 75, Width: 320, Height: 180,
		LayerAt: time.Second, FirstStable: 3 * time.Second, Packets: 15, Lost: 1}
	if a != want {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}
	if a := Aggregate([]Report{{FirstStable: time.Second}, {FirstStable: -1}}); a.FirstStable >= 0 {
		t.Errorf("one player never stable: FirstStable %v", a.FirstStable)
	}
}

// FuzzPacket feeds arbitrary packets: the meter must not panic and its
// report must stay consistent.
func FuzzPacket(f *testing.F) {
	for _, s := range stream(streamOpts{frames: 3}) {
		b, _ := s.p.Marshal()
		f.Add(b, int64(s.at))
	}
	f.Fuzz(func(t *testing.T, b []byte, at int64) {
		m := NewMeter()
		m.Start(t0)
		var p rtp.Packet
		if p.Unmarshal(b) != nil {
			return
		}
		for i := range 3 { // the same packet three times, then neighbours
			q := p
			q.SequenceNumber += uint16(i)
			q.Timestamp += uint32(i * 3000)
			m.Packet(&q, t0.Add(time.Duration(at%int64(time.Hour))))
		}
		r := m.Report(t0.Add(time.Hour))
		if r.Frames < 0 || r.Frames > 3 || r.FreezeTime < 0 || r.Lost < 0 || r.Packets > 3 {
			t.Errorf("report %+v", r)
		}
	})
}
