package main

import (
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c config)
	}{
		{name: "defaults match onair bench fanout's", args: nil, check: func(t *testing.T, c config) {
			if c.url != "ws://127.0.0.1:7880" || c.apiKey != "devkey" || c.apiSecret != "secret" || c.players != 3 ||
				c.warmup != 10*time.Second || c.duration != time.Minute || c.gop != 2*time.Second || c.bitrate != 2_400_000 ||
				c.pliAfter != 0 || c.quality != livekit.VideoQuality_HIGH || !c.link.Clean() {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "the shaped condition", args: []string{"--shape", "1mbit,rtt=40ms", "--players", "2", "--simulcast"}, check: func(t *testing.T, c config) {
			if !c.link.Capped() || c.link.Rate[0].Bps != 1_000_000 || c.link.RTT != 40*time.Millisecond || c.players != 2 {
				t.Errorf("link %v, players %d", c.link, c.players)
			}
		}},
		{name: "auto asks for high", args: []string{"--layer", "auto"}, check: func(t *testing.T, c config) {
			if c.quality != livekit.VideoQuality_HIGH {
				t.Errorf("quality %v", c.quality)
			}
		}},
		{name: "low", args: []string{"--layer", "LOW"}, check: func(t *testing.T, c config) {
			if c.quality != livekit.VideoQuality_LOW {
				t.Errorf("quality %v", c.quality)
			}
		}},
		{name: "unknown layer", args: []string{"--layer", "best"}, wantErr: "--layer"},
		{name: "bad link", args: []string{"--shape", "fast"}, wantErr: "link"},
		{name: "no players", args: []string{"--players", "0"}, wantErr: "--players"},
		{name: "negative pli-after", args: []string{"--pli-after", "-1s"}, wantErr: "--pli-after"},
		{name: "ports past 65535", args: []string{"--port-base", "65534"}, wantErr: "--port-base"},
		{name: "not a websocket URL", args: []string{"--url", "127.0.0.1:7880"}, wantErr: "--url"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestVP8Frame(t *testing.T) {
	tests := []struct {
		name          string
		key           bool
		width, height int
		size          int
	}{
		{"720p keyframe", true, 1280, 720, 30000},
		{"180p keyframe", true, 320, 180, 1800},
		{"inter frame", false, 1280, 720, 10000},
		{"tiny frame grows to its header", true, 640, 360, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := vp8Frame(tt.key, tt.width, tt.height, tt.size, 7)
			hdr := 3
			if tt.key {
				hdr = 10
			}
			if want := max(tt.size, hdr+4); len(f) != want {
				t.Fatalf("len %d, want %d", len(f), want)
			}
			tag := uint32(f[0]) | uint32(f[1])<<8 | uint32(f[2])<<16
			if inter := tag&1 == 1; inter == tt.key {
				t.Errorf("inter-frame bit %v for key %v", inter, tt.key)
			}
			if tag&0x10 == 0 {
				t.Error("show_frame not set")
			}
			if got := int(tag >> 5); got != len(f)-hdr {
				t.Errorf("first partition size %d, want %d", got, len(f)-hdr)
			}
			if tt.key {
				if f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
					t.Errorf("start code % x", f[3:6])
				}
				if w, h := int(binary.LittleEndian.Uint16(f[6:])), int(binary.LittleEndian.Uint16(f[8:])); w != tt.width || h != tt.height {
					t.Errorf("size %dx%d, want %dx%d", w, h, tt.width, tt.height)
				}
			}
			if binary.BigEndian.Uint32(f[hdr:]) != 7 {
				t.Error("sequence number not after the header")
			}
		})
	}
}

func TestSimulcastLayers(t *testing.T) {
	ls := simulcastLayers(2_500_000)
	want := []layer{
		{livekit.VideoQuality_HIGH, 1280, 720, 2_500_000},
		{livekit.VideoQuality_MEDIUM, 640, 360, 600_000},
		{livekit.VideoQuality_LOW, 320, 180, 150_000},
	}
	if len(ls) != len(want) {
		t.Fatalf("%d layers", len(ls))
	}
	for i := range want {
		if ls[i] != want[i] {
			t.Errorf("layer %d = %+v, want %+v", i, ls[i], want[i])
		}
	}
}
