package sfu

import "testing"

func TestRewriterWrapAround(t *testing.T) {
	tests := []struct {
		name            string
		initSeq         uint16
		initTS          uint32
		firstExt        uint64
		firstTS         uint32
		packets         int
		tsStep          uint32
		wantLastSeq     uint16
		wantLastTSDelta uint32
	}{
		{"no wrap", 100, 1000, 1 << 16, 5, 10, 3000, 109, 9 * 3000},
		{"sequence wraps", 65530, 1000, 1<<16 | 65000, 0, 10, 3000, 3, 9 * 3000},
		{"timestamp wraps", 7, 0xffffff00, 1 << 17, 0xfffff000, 4, 3000, 10, 3 * 3000},
		{"source wraps", 1, 1, 1<<16 | 65534, 0xfffffff0, 4, 960, 4, 3 * 960},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r rewriter
			r.start(tc.firstExt, tc.firstTS, 0, 90000, 0, 0, tc.initSeq, tc.initTS)
			var seq uint16
			var ts uint32
			for i := range tc.packets {
				ext, srcTS := tc.firstExt+uint64(i), tc.firstTS+uint32(i)*tc.tsStep
				s, o, ok := r.mapPacket(ext, srcTS)
				if !ok {
					t.Fatalf("packet %d not mapped", i)
				}
				if i == 0 && (s != tc.initSeq || o != tc.initTS) {
					t.Fatalf("first packet %d/%d, want %d/%d", s, o, tc.initSeq, tc.initTS)
				}
				if i > 0 && (s != seq+1 || o-ts != tc.tsStep) {
					t.Fatalf("packet %d: seq %d after %d, ts step %d", i, s, seq, o-ts)
				}
				seq, ts = s, o
				r.sent(ext, s, o, int64(i))
			}
			if seq != tc.wantLastSeq || ts-tc.initTS != tc.wantLastTSDelta {
				t.Fatalf("last %d (ts +%d), want %d (+%d)", seq, ts-tc.initTS, tc.wantLastSeq, tc.wantLastTSDelta)
			}
		})
	}
}

func TestRewriterSplice(t *testing.T) {
	tests := []struct {
		name      string
		lastSeq   uint16
		gapNanos  int64
		clockRate uint32
		newExt    uint64
		newTS     uint32
		wantTSAdv uint32
	}{
		{"video after 100 ms", 500, 100e6, 90000, 1<<16 | 7, 123456, 9000},
		{"audio after 20 ms across wrap", 65535, 20e6, 48000, 1<<16 | 60000, 0xfffffff0, 960},
		{"at once", 10, 0, 90000, 1 << 16, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r rewriter
			const firstExt = 1<<16 | 30000
			r.start(firstExt, 999, 0, tc.clockRate, 0, 0, tc.lastSeq, 4242)
			r.sent(firstExt, tc.lastSeq, 4242, 1e9)
			// The new source: different numbering altogether.
			r.start(tc.newExt, tc.newTS, 1e9+tc.gapNanos, tc.clockRate, 0, 0, 0, 0)
			s, ts, ok := r.mapPacket(tc.newExt, tc.newTS)
			if !ok || s != tc.lastSeq+1 || ts-4242 != tc.wantTSAdv {
				t.Fatalf("spliced first packet: seq %d ts +%d ok %v; want %d, +%d", s, ts-4242, ok, tc.lastSeq+1, tc.wantTSAdv)
			}
			if _, _, ok := r.mapPacket(firstExt, 999); ok && tc.newExt > firstExt {
				t.Fatal("a packet of the old source was mapped into the new segment")
			}
			s2, ts2, _ := r.mapPacket(tc.newExt+1, tc.newTS+3000)
			if s2 != s+1 || ts2-ts != 3000 {
				t.Fatalf("second packet %d/%d after %d/%d", s2, ts2, s, ts)
			}
		})
	}
}

func TestRewriterNackTranslation(t *testing.T) {
	var r rewriter
	const first = 1<<16 | 65530
	r.start(first, 0, 0, 90000, 0, 0, 65533, 0) // out sequence wraps after 3 packets
	for i := range uint64(10) {
		s, ts, _ := r.mapPacket(first+i, uint32(i)*3000)
		r.sent(first+i, s, ts, 0)
	}
	tests := []struct {
		seq     uint16
		wantExt uint64
		ok      bool
	}{
		{65533, first, true},
		{65535, first + 2, true},
		{0, first + 3, true},
		{6, first + 9, true},
		{7, 0, false},     // not sent yet
		{65532, 0, false}, // before the segment
		{30000, 0, false}, // far away
	}
	for _, tc := range tests {
		ext, ok := r.nackExt(tc.seq)
		if ok != tc.ok || (ok && ext != tc.wantExt) {
			t.Errorf("nack %d: ext %d ok %v, want %d %v", tc.seq, ext, ok, tc.wantExt, tc.ok)
		}
	}
	// After a splice, the old segment's numbers are not answered.
	r.start(5, 0, 0, 90000, 0, 0, 0, 0)
	if _, ok := r.nackExt(65535); ok {
		t.Error("a sequence number of the previous segment was translated")
	}
}

func TestRewriterReplaySqueeze(t *testing.T) {
	var r rewriter
	// A keyframe group of 60 frames (2 s at 30 fps), replayed up to ext 1059.
	const key, head = 1000, 1059
	r.start(key, 0, 0, 90000, head, 59*3000, 10, 5000)
	prev := uint32(0)
	for i := range uint32(60) {
		_, ts, _ := r.mapPacket(key+uint64(i), i*3000)
		if i == 0 && ts != 5000 {
			t.Fatalf("first replayed ts %d, want 5000", ts)
		}
		if i > 0 && ts <= prev {
			t.Fatalf("replayed timestamps not increasing: %d after %d", ts, prev)
		}
		prev = ts
	}
	if span := prev - 5000; span != 90000*replayWindowMillis/1000 {
		t.Fatalf("replay spans %d ticks, want %d", span, 90000*replayWindowMillis/1000)
	}
	// Live packets continue from the head with their real spacing.
	_, ts, _ := r.mapPacket(head+1, 60*3000)
	if ts-prev != 3000 {
		t.Fatalf("first live packet %d ticks after the replay, want 3000", ts-prev)
	}
}
