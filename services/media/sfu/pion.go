package sfu

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/packetio"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// What pion allocates per peer connection is most of what a player costs
// the edge, so the edge trims it where pion lets it:
//   - one logger per pion scope for the whole edge (pion's default factory
//     builds five log.Loggers per scope per peer connection);
//   - one network-interface list for the whole edge (pion's default reads
//     the interfaces over netlink again for every ICE agent and keeps the
//     result);
//   - a player's RTCP is handed to its downtracks by pion's own SRTCP
//     goroutine (rtcpSink), with no reader goroutine, read buffer or packet
//     queue per downtrack.

// ShareAcrossPeers sets what every peer connection of the edge can share:
// its network-interface list and its pion loggers (writing to log).
func ShareAcrossPeers(se *webrtc.SettingEngine, log *slog.Logger) error {
	n, err := stdnet.NewNet()
	if err != nil {
		return fmt.Errorf("sfu: list network interfaces: %w", err)
	}
	// Safe to share: pion only reads it, unless ICE gathers continually
	// (it refreshes the list then), which the edge never asks for.
	se.SetNet(n)
	se.LoggerFactory = &pionLoggers{log: log}
	return nil
}

// PlayerPeers builds players' peer connections: no interceptors (the edge
// does their RTCP itself) and RTCP read streams that are rtcpSinks.
type PlayerPeers struct {
	se    webrtc.SettingEngine
	media *webrtc.MediaEngine
	reg   *interceptor.Registry // empty
}

// NewPlayerPeers builds players' peer connections from se (the edge's
// shared settings: ShareAcrossPeers) and media (its codecs).
func NewPlayerPeers(se webrtc.SettingEngine, media *webrtc.MediaEngine) PlayerPeers {
	return PlayerPeers{se: se, media: media, reg: &interceptor.Registry{}}
}

// NewPeerConnection is sub's peer connection, whose RTCP goes to sub's
// downtracks. The BufferFactory that routes it is per API, hence an API per
// player: a small struct next to the peer connection it makes.
func (p *PlayerPeers) NewPeerConnection(sub *Player) (*webrtc.PeerConnection, error) {
	se := p.se
	se.BufferFactory = sub.readStream
	api := webrtc.NewAPI(webrtc.WithMediaEngine(p.media), webrtc.WithInterceptorRegistry(p.reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	sub.pc = pc
	return pc, nil
}

// readStream is the buffer behind each of a player's SRTP and SRTCP read
// streams (SettingEngine.BufferFactory). pion's SRTCP session writes every
// RTCP packet from the player into the stream of each SSRC the packet is
// about: the edge's own downtracks get theirs parsed on the spot, anything
// else (a browser's SDES about its own SSRC, RTP from a player that should
// send none) is dropped rather than queued in a buffer nobody reads.
func (s *Player) readStream(t packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
	if t == packetio.RTCPBufferPacket {
		for _, d := range s.tracks {
			if d.bound.Load() && d.ssrc == ssrc {
				return rtcpSink{d: d}
			}
		}
		return rtcpSink{sub: s}
	}
	return rtcpSink{}
}

// rtcpSink hands the RTCP written to it to downtrack d, or when about no
// SSRC of the edge's, its congestion feedback to the player's sub (nil:
// drops it). Nobody reads it: Read says the stream has ended.
type rtcpSink struct {
	d   *downTrack
	sub *Player
}

func (k rtcpSink) Write(b []byte) (int, error) {
	switch {
	case k.d != nil:
		k.d.handleRTCP(b)
	case k.sub != nil:
		var fb rtcpFeedback
		parseRTCP(b, 0, &fb)
		k.sub.feedback(&fb, false)
	}
	return len(b), nil
}

func (rtcpSink) Read([]byte) (int, error) { return 0, io.EOF }
func (rtcpSink) Close() error             { return nil }

// pionLoggers is a logging.LoggerFactory that gives every peer connection
// the same logger per scope, writing to the edge's slog logger. pion's
// errors are logged as errors, its warnings and the rest at debug level
// (pion's own default shows errors only).
type pionLoggers struct {
	log    *slog.Logger
	scopes sync.Map // scope -> *pionLogger
}

// NewLogger implements logging.LoggerFactory.
func (f *pionLoggers) NewLogger(scope string) logging.LeveledLogger {
	if l, ok := f.scopes.Load(scope); ok {
		return l.(*pionLogger)
	}
	l, _ := f.scopes.LoadOrStore(scope, &pionLogger{log: f.log.With("component", "pion", "scope", scope)})
	return l.(*pionLogger)
}

type pionLogger struct{ log *slog.Logger }

func (l *pionLogger) at(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l *pionLogger) atf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l *pionLogger) Trace(string)          {}
func (l *pionLogger) Tracef(string, ...any) {}
func (l *pionLogger) Debug(msg string)      { l.at(slog.LevelDebug, msg) }
func (l *pionLogger) Debugf(f string, a ...any) {
	l.atf(slog.LevelDebug, f, a...)
}
func (l *pionLogger) Info(msg string)          { l.at(slog.LevelDebug, msg) }
func (l *pionLogger) Infof(f string, a ...any) { l.atf(slog.LevelDebug, f, a...) }
func (l *pionLogger) Warn(msg string)          { l.at(slog.LevelDebug, msg) }
func (l *pionLogger) Warnf(f string, a ...any) { l.atf(slog.LevelDebug, f, a...) }
func (l *pionLogger) Error(msg string)         { l.at(slog.LevelError, msg) }
func (l *pionLogger) Errorf(f string, a ...any) {
	l.atf(slog.LevelError, f, a...)
}
