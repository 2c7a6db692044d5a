// Package sfu is the media edge's forwarding core: a stream's tracks come
// in, are kept in one shared cache per track, and go out to every player
// through the player's own downtracks. It knows nothing of sessions,
// signaling, the stream registry or other edges: the edge (package media)
// and the relay (package relay) drive it.
//
// Where a change goes, a file each:
//   - uptrack.go: UpTrack, a track coming in (a publisher's, or a relayed
//     one fed through Ingest), the one ingest path; keyframe requests
//     upstream.
//   - keyframe.go: keyframe detection per codec (VP8 in package vp8) and
//     the keyframe-group tracker every ingested video packet goes through.
//   - packetcache.go: the one store of a track's recent packets, shared by
//     all its players (live packets, NACKs, keyframe replays).
//   - player.go: Player, one player's forwarding (its downtracks), and what
//     the edge asks of it (AddTrack, Connected, SwitchTo, Close).
//   - downtrack.go: a player's copy of one track: reading the cache,
//     NACKs, sender reports, skipping ahead.
//   - resend.go: how often and how soon again a downtrack resends one
//     packet for repeated NACKs.
//   - rewrite.go: a downtrack's SSRC, sequence and timestamp space, and
//     splicing a new source in.
//   - forwardpool.go: the workers that run the players' turns.
//   - rtp.go, rtcp.go: the RTP and RTCP the edge parses itself (nothing
//     allocated on the packet path).
//   - pion.go: the players' pion peer connections (their RTCP goes straight
//     to the downtracks: rtcpSink), and what every peer shares.
//   - edgedelay.go: the delay the edge adds to a packet (DelayHist).
//
// BenchmarkForward (forward_bench_test.go) is the fast path's budget: it
// must stay at 0 allocs/op.
package sfu
