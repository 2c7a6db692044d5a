package sfu

import (
	"bytes"
	"testing"
)

func TestPacketCacheEviction(t *testing.T) {
	const age = int64(1e9)
	tests := []struct {
		name     string
		slots    int
		maxSlots int
		insert   int    // packets 1..insert, 1 ms apart
		keyAt    uint64 // pin a keyframe group here (0: none)
		getExt   uint64
		now      int64
		checkAge bool
		want     bool
		wantSize int
	}{
		{"recent", 16, 16, 10, 0, 5, 10e6, true, true, 16},
		{"overwritten by count", 16, 16, 40, 0, 5, 40e6, false, false, 16},
		{"within count", 16, 16, 40, 0, 25, 40e6, false, true, 16},
		{"too old for a NACK", 16, 16, 10, 0, 5, 5e9, true, false, 16},
		{"too old is fine for a replay", 16, 16, 10, 0, 5, 5e9, false, true, 16},
		{"keyframe group keeps the ring growing", 16, 64, 40, 3, 3, 40e6, false, true, 64},
		{"keyframe group larger than the bound is dropped", 16, 32, 100, 3, 3, 100e6, false, false, 32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newPacketCache(tc.slots, tc.maxSlots, age)
			for i := 1; i <= tc.insert; i++ {
				ext := uint64(i)
				c.insert(ext, int64(i)*1e6, uint32(i)*3000, 96, false, []byte{byte(i), 1, 2, 3})
				if ext == tc.keyAt {
					c.setKeyframe(ext)
				}
			}
			buf := make([]byte, MaxPayload)
			p, ok := c.get(tc.getExt, buf, tc.now, tc.checkAge)
			if ok != tc.want {
				t.Fatalf("get(%d) ok %v, want %v", tc.getExt, ok, tc.want)
			}
			if ok && (p.n != 4 || buf[0] != byte(tc.getExt) || p.ts != uint32(tc.getExt)*3000) {
				t.Fatalf("get(%d) = %+v %v", tc.getExt, p, buf[:p.n])
			}
			if c.size() != tc.wantSize {
				t.Fatalf("ring size %d, want %d", c.size(), tc.wantSize)
			}
			if c.head.Load() != uint64(tc.insert)+1 {
				t.Fatalf("head %d", c.head.Load())
			}
		})
	}
}

func TestPacketCacheKeyframeGroup(t *testing.T) {
	c := newPacketCache(8, 8, 1e9)
	if _, _, ok := c.keyframeGroup(); ok {
		t.Fatal("a keyframe group in an empty cache")
	}
	for i := uint64(1); i <= 5; i++ {
		c.insert(i, 0, 0, 96, false, []byte{1})
	}
	c.setKeyframe(3)
	start, head, ok := c.keyframeGroup()
	if !ok || start != 3 || head != 6 {
		t.Fatalf("group %d..%d %v", start, head, ok)
	}
	// Out-of-order and duplicate packets land in their slots.
	c.insert(4, 0, 0, 96, true, []byte("again"))
	buf := make([]byte, 10)
	p, ok := c.get(4, buf, 0, false)
	if !ok || !p.marker || !bytes.Equal(buf[:p.n], []byte("again")) {
		t.Fatalf("re-inserted packet %+v", p)
	}
}

func TestSeqUnwrap(t *testing.T) {
	var u seqUnwrapper
	seqs := []uint16{65534, 65535, 0, 1, 65535, 2, 30000, 60000, 7000}
	want := []uint64{1<<16 | 65534, 1<<16 | 65535, 2 << 16, 2<<16 | 1, 1<<16 | 65535, 2<<16 | 2, 2<<16 | 30000, 2<<16 | 60000, 3<<16 | 7000}
	for i, s := range seqs {
		if got := u.unwrap(s); got != want[i] {
			t.Fatalf("unwrap(%d) #%d = %d, want %d", s, i, got, want[i])
		}
	}
}
