package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/bench/netshape"
	"github.com/onair-dev/onair/bench/viewer"
	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/procstat"
	"github.com/onair-dev/onair/internal/udpgro"
	"github.com/onair-dev/onair/internal/whipclient"
	"github.com/onair-dev/onair/services/media/vp8"
)

func init() { benchCommands["fanout"] = runBenchFanout }

const fanoutUsage = `onair bench fanout publishes one stream by WHIP and plays it with N WHEP players.

usage:
  onair bench fanout --whip URL --whep URL --token T [--players N] [--duration D] [--server-pid PID]
                     [--shape LINK]... [--warmup D] [--simulcast] [--layer auto|high|medium|low] [--pli]

The publisher sends VP8 (generated frames: valid VP8 headers and filler, no
encoder needed) at --bitrate and 30 fps with a keyframe every --gop, plus
Opus silence, and ignores keyframe requests (see --pli). --late of the players join
halfway through. With --server-pid the server's CPU (from /proc/PID/stat)
per egress packet and RSS per player are shown: the server's peak RSS while
the players were on (sampled every second) less its RSS with only the
publisher on, over the players. Point it at a freshly started server: memory
a server kept from earlier players would count as "before" and hide theirs.

The players receive with UDP GRO (--gro, Linux): on loopback a receiving
socket without it makes a server that sends trains of packets with GSO do
each player's per-packet receive work inside its own send call, which a real
network moves to the players' machines. --gro=false turns it off.

Shaped players (--shape, repeatable; players take the shapes in turn):
each player's socket is pinned to --port-base plus its number, rate caps are
tc classes on lo for those ports (so the bench must run in a network
namespace whose only interface is lo: scripts/bench-shaped.sh runs it under
` + "`unshare -n`" + `), and delay and loss are added in the player's socket. A rate
schedule's times count from the end of --warmup. Shaped players send
transport-wide congestion control feedback (TWCC) and read without GRO. The
bench then prints what each viewer saw (see bench/viewer): rendered fps,
freezes as WebRTC's stats count them, received kbit/s, the layer (picture
size of the latest keyframe) and when it was reached, and when video first
played 5 s without a freeze. Every player asks for a keyframe (PLI) when its
picture is stuck (packets arrive but none continues it for 500 ms), as a
browser does; the publisher sends one with --pli or --simulcast.

` + netshape.LinkSyntax + `

--simulcast publishes three VP8 layers (RIDs f, h, q: 1280x720 at --bitrate,
640x360 and 320x180 at 24 % and 6 % of it) and answers keyframe requests per
layer; --pli answers them on the single layer. --layer asks the WHEP
endpoint for a layer (?layer=...).
`

// fanoutConfig is what one run measures.
type fanoutConfig struct {
	whip, whep, token string
	players, late     int
	duration, gop     time.Duration
	bitrate           int
	pid               int
	pace              bool
	gro               bool
	// Shaped players and what they see.
	shapes    []netshape.Link
	portBase  int
	warmup    time.Duration
	simulcast bool
	pli       bool
	layer     string
}

func runBenchFanout(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("onair bench fanout", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), fanoutUsage); fs.PrintDefaults() }
	var c fanoutConfig
	fs.StringVar(&c.whip, "whip", "", "WHIP URL to publish to (required)")
	fs.StringVar(&c.whep, "whep", "", "WHEP URL to play from (required)")
	fs.StringVar(&c.token, "token", "", "bearer token for WHIP and WHEP (required)")
	fs.IntVar(&c.players, "players", 50, "players")
	fs.IntVar(&c.late, "late", -1, "players that join halfway (default: a tenth, at least 1)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "measurement time once the first players are up")
	fs.DurationVar(&c.gop, "gop", 2*time.Second, "keyframe interval")
	fs.IntVar(&c.bitrate, "bitrate", 2_400_000, "video bits per second")
	fs.BoolVar(&c.gro, "gro", true, "players receive with UDP GRO, so on loopback a server that sends with GSO is not charged for its players' receive work (Linux; see internal/udpgro)")
	fs.BoolVar(&c.pace, "pace", false, "spread each frame's packets at 2.5x --bitrate, as a browser's pacer does (default: each frame in one burst)")
	fs.IntVar(&c.pid, "server-pid", 0, "the server's process ID (Linux): CPU and RSS")
	fs.Func("shape", "a player link, repeatable: players take them in turn (see above)", func(s string) error {
		l, err := netshape.ParseLink(s)
		if err == nil {
			c.shapes = append(c.shapes, l)
		}
		return err
	})
	fs.IntVar(&c.portBase, "port-base", 42000, "with --shape: player i's UDP port is port-base+i")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "time between the players connecting and the measurement")
	fs.BoolVar(&c.simulcast, "simulcast", false, "publish three simulcast layers (f 1280x720, h 640x360, q 320x180)")
	fs.BoolVar(&c.pli, "pli", false, "answer keyframe requests (always with --simulcast)")
	fs.StringVar(&c.layer, "layer", "", "ask the WHEP endpoint for this layer: auto, high, medium or low (default: not asked)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case c.whip == "" || c.whep == "" || c.token == "":
		fs.Usage()
		return errors.New("--whip, --whep and --token are required")
	case c.players < 1 || c.duration <= 0 || c.gop <= 0 || c.bitrate < 10_000:
		fs.Usage()
		return errors.New("--players, --duration, --gop and --bitrate must be positive")
	case c.warmup < 0:
		return errors.New("--warmup must not be negative")
	case c.layer != "" && !slices.Contains([]string{"auto", "high", "medium", "low"}, c.layer):
		return fmt.Errorf("--layer %q: want auto, high, medium or low", c.layer)
	case len(c.shapes) > 0 && (c.portBase < 1024 || c.portBase+c.players > 65535):
		return fmt.Errorf("--port-base %d: the players' ports must be within 1024-65535", c.portBase)
	}
	for _, u := range []string{c.whip, c.whep} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%q is not an http(s) URL", u)
		}
	}
	if c.late < 0 {
		c.late = max(1, c.players/10)
	}
	c.late = min(c.late, c.players)
	res, err := fanout(ctx, c)
	if err != nil {
		return err
	}
	res.print(os.Stdout, c)
	return res.printViewers(os.Stdout, c)
}

// fanoutPlayer is one WHEP player's counts.
type fanoutPlayer struct {
	name       string
	n          int // the player's number, from 0
	link       netshape.Link
	net        *netshape.Net // shaped players' sockets
	meter      *viewer.Meter // the video as its viewer sees it
	start      time.Time
	up         atomic.Int64 // when the peer connection came up, unix ns
	mu         sync.Mutex
	firstFrame time.Duration
	// firstAfterUp: from the connection coming up to the first keyframe.
	firstAfterUp time.Duration
	packets      int64
	bytes        int64
	ranges       map[uint32]*seqRange
	delays       []time.Duration
}

type seqRange struct {
	first, highest uint64
	last           uint16
	got            int64
}

func (p *fanoutPlayer) loss() (want, got int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.ranges {
		want += int64(r.highest-r.first) + 1
		got += r.got
	}
	return want, min(got, want)
}

type fanoutResult struct {
	connected, late    int
	wall               time.Duration
	packets, bytes     int64
	lossWant, lossGot  int64
	initial, lateFirst []time.Duration
	lateAfterUp        []time.Duration
	delays             []time.Duration
	cpu                time.Duration
	// RSS with the publisher only, the highest sample while players were
	// on, and the last one.
	rssBefore, rssPeak, rssEnd int64
	// What each player's viewer saw in its window.
	viewers []viewerResult
}

func (r *fanoutResult) print(w io.Writer, c fanoutConfig) {
	pct := func(d []time.Duration, p float64) string {
		if len(d) == 0 {
			return "-"
		}
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(100 * time.Microsecond).String()
	}
	secs := r.wall.Seconds()
	fmt.Fprintf(w, "players connected      %d/%d (%d late)\n", r.connected, c.players, r.late)
	receive := "one datagram per read (--gro=false)"
	switch {
	case len(c.shapes) > 0:
		receive = "on shaped links (--shape), one datagram per read"
	case c.gro:
		receive = "with UDP GRO (--gro)"
	}
	fmt.Fprintf(w, "players receive        %s\n", receive)
	fmt.Fprintf(w, "egress                 %.0f packets/s, %.1f Mbit/s\n", float64(r.packets)/secs, float64(r.bytes)*8/secs/1e6)
	loss := 0.0
	if r.lossWant > 0 {
		loss = 100 * float64(r.lossWant-r.lossGot) / float64(r.lossWant)
	}
	fmt.Fprintf(w, "loss                   %.2f %%\n", loss)
	fmt.Fprintf(w, "first frame, initial   p50 %s  p95 %s  max %s\n", pct(r.initial, .5), pct(r.initial, .95), pct(r.initial, 1))
	fmt.Fprintf(w, "first frame, late      p50 %s  p95 %s  max %s  (from the WHEP request)\n", pct(r.lateFirst, .5), pct(r.lateFirst, .95), pct(r.lateFirst, 1))
	fmt.Fprintf(w, "                       p50 %s  p95 %s  max %s  (from the connection up)\n", pct(r.lateAfterUp, .5), pct(r.lateAfterUp, .95), pct(r.lateAfterUp, 1))
	fmt.Fprintf(w, "packet delay           p50 %s  p99 %s  (publisher send to player receive)\n", pct(r.delays, .5), pct(r.delays, .99))
	if c.pid > 0 {
		if r.cpu > 0 && r.packets > 0 {
			fmt.Fprintf(w, "server CPU             %.2f s: %.0f egress packets per CPU-second (%.2f µs per packet)\n",
				r.cpu.Seconds(), float64(r.packets)/r.cpu.Seconds(), float64(r.cpu.Microseconds())/float64(r.packets))
		}
		if r.connected > 0 {
			fmt.Fprintf(w, "server RSS             %.1f MB before players, peak %.1f MB with them (%.1f MB at the end): %.0f KiB per player\n",
				float64(r.rssBefore)/1e6, float64(r.rssPeak)/1e6, float64(r.rssEnd)/1e6,
				float64(r.rssPeak-r.rssBefore)/1024/float64(r.connected))
		}
	}
}

// benchAPI is the publisher's WebRTC API (pion's default interceptors) or,
// with player, the players' one: a NACK generator and receiver reports,
// what a browser player sends, without the stats and TWCC interceptors
// that would make a few hundred players in one process cost more CPU than
// the server they measure; with twcc (shaped players, a few) it sends
// transport-wide congestion control feedback too, as browsers do. n, when
// not nil, gives the sockets (GRO, or a shaped link).
func benchAPI(target string, player bool, n transport.Net, twcc bool) (*webrtc.API, error) {
	se := webrtc.SettingEngine{}
	se.SetICETimeouts(5*time.Second, 10*time.Second, time.Second)
	if u, err := url.Parse(target); err == nil {
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			iceloopback.Restrict(&se)
		}
	}
	if n != nil {
		se.SetNet(n)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if player {
		if err := webrtc.ConfigureNack(m, ir); err != nil {
			return nil, err
		}
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return nil, err
		}
		if twcc {
			if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
				return nil, err
			}
		}
	} else {
		if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
			return nil, err
		}
		// The header extensions that name simulcast layers (mid, rid,
		// repaired rid), as browsers offer them.
		if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
			return nil, err
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func waitConnected(ctx context.Context, pc *webrtc.PeerConnection) error {
	up := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(up) })
		}
	})
	if pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		return nil
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return errors.New("the peer connection did not come up")
	}
}

// benchMTU is the publisher's RTP payload budget per packet, as a browser's.
const benchMTU = 1200

func fanout(ctx context.Context, c fanoutConfig) (*fanoutResult, error) {
	var playerNet transport.Net
	if c.gro && len(c.shapes) == 0 {
		n, err := udpgro.NewNet()
		if err != nil {
			return nil, err
		}
		playerNet = n
	}
	playerAPI, err := benchAPI(c.whep, true, playerNet, false)
	if err != nil {
		return nil, err
	}
	shaper, err := startShaper(ctx, c)
	if err != nil {
		return nil, err
	}
	if shaper != nil {
		defer shaper.Close(context.WithoutCancel(ctx))
	}
	pub, err := publish(ctx, c)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	time.Sleep(500 * time.Millisecond) // the first keyframe reaches the server

	res := &fanoutResult{late: c.late}
	_, res.rssBefore = procStat(c.pid)
	var measuring atomic.Bool
	var mu sync.Mutex
	var players []*fanoutPlayer
	var closers []func()
	var numbered atomic.Int64
	defer func() {
		for _, f := range closers {
			f()
		}
	}()
	play := func(ctx context.Context) (*fanoutPlayer, error) {
		i := int(numbered.Add(1)) - 1
		p := &fanoutPlayer{name: fmt.Sprintf("p%d", i+1), n: i, meter: viewer.NewMeter(), ranges: map[uint32]*seqRange{}}
		api := playerAPI
		if len(c.shapes) > 0 {
			var err error
			if p.link, p.net, api, err = shapedPlayer(ctx, c, shaper, i); err != nil {
				return nil, err
			}
		}
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return nil, err
		}
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				_ = pc.Close()
				return nil, err
			}
		}
		p.start = time.Now()
		pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			video := t.Kind() == webrtc.RTPCodecTypeVideo
			if video {
				ctx, stop := context.WithCancel(context.Background())
				defer stop()
				go p.meter.AskKeyframes(ctx, func() {
					_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.SSRC())}})
				})
			}
			buf := make([]byte, 1600)
			var pkt rtp.Packet
			for {
				n, _, err := t.Read(buf)
				if err != nil {
					return
				}
				now := time.Now()
				if pkt.Unmarshal(buf[:n]) != nil {
					continue
				}
				p.mu.Lock()
				if measuring.Load() {
					p.packets++
					p.bytes += int64(n)
					r := p.ranges[pkt.SSRC]
					if r == nil {
						r = &seqRange{first: 1<<16 | uint64(pkt.SequenceNumber), last: pkt.SequenceNumber}
						r.highest = r.first
						p.ranges[pkt.SSRC] = r
					} else if d := int16(pkt.SequenceNumber - r.last); d > 0 {
						r.highest += uint64(d)
						r.last = pkt.SequenceNumber
					}
					r.got++
				}
				if video {
					p.meter.Packet(&pkt, now)
					if f, ok := vp8.FrameStart(pkt.Payload); ok {
						key := len(f) >= 10 && f[0]&1 == 0
						hdr := 3
						if key {
							hdr = 10
						}
						if key && p.firstFrame == 0 {
							p.firstFrame = now.Sub(p.start)
							if up := p.up.Load(); up > 0 {
								p.firstAfterUp = time.Duration(now.UnixNano() - up)
							}
						}
						// A joiner's first seconds are the replayed keyframe
						// group, sent late on purpose: not a delay.
						if len(f) >= hdr+12 && measuring.Load() && now.Sub(p.start) > 3*time.Second && len(p.delays) < 20000 {
							sent := int64(binary.BigEndian.Uint64(f[hdr+4:]))
							if d := now.UnixNano() - sent; d >= 0 && d < int64(10*time.Second) {
								p.delays = append(p.delays, time.Duration(d))
							}
						}
					}
				}
				p.mu.Unlock()
			}
		})
		loc, err := whipclient.Post(ctx, pc, withLayer(c.whep, c.layer), c.token)
		if err == nil {
			err = waitConnected(ctx, pc)
			p.up.Store(time.Now().UnixNano())
			if measuring.Load() { // a late player's window starts as it joins
				p.meter.Start(time.Now())
			}
		}
		mu.Lock()
		closers = append(closers, func() { _ = pc.Close(); whipclient.Delete(loc) })
		mu.Unlock()
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	join := func(n int, late bool) error {
		sem := make(chan struct{}, 8)
		var jwg sync.WaitGroup
		var firstErr error
		for i := range n {
			jwg.Add(1)
			sem <- struct{}{}
			go func() {
				defer jwg.Done()
				defer func() { <-sem }()
				jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				p, err := play(jctx)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("player %d: %w", i, err)
					}
					return
				}
				players = append(players, p)
				_ = late
			}()
			if (i+1)%20 == 0 {
				fmt.Fprintf(os.Stderr, "\rplayers: %d", len(players))
			}
		}
		jwg.Wait()
		fmt.Fprintf(os.Stderr, "\rplayers: %d\n", len(players))
		return firstErr
	}
	initial := c.players - c.late
	if err := join(initial, false); err != nil && len(players) == 0 {
		return nil, err
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "some players failed:", err)
	}
	mu.Lock()
	initialPlayers := slices.Clone(players)
	mu.Unlock()
	time.Sleep(c.warmup)
	measuring.Store(true)
	cpu0, _ := procStat(c.pid)
	t0 := time.Now()
	for _, p := range initialPlayers {
		p.meter.Start(t0)
	}
	if shaper != nil {
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		for _, p := range initialPlayers {
			if len(p.link.Rate) > 1 {
				go func() {
					if err := shaper.Follow(sctx, p.net.Port(), p.link.Rate[1:], t0); err != nil && sctx.Err() == nil {
						fmt.Fprintf(os.Stderr, "%s: rate schedule: %v\n", p.name, err)
					}
				}()
			}
		}
	}
	half := time.After(c.duration / 2)
	over := time.After(c.duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var latePlayers []*fanoutPlayer
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-half:
			before := len(players)
			if err := join(c.late, true); err != nil {
				fmt.Fprintln(os.Stderr, "some late players failed:", err)
			}
			mu.Lock()
			latePlayers = slices.Clone(players[before:])
			mu.Unlock()
		case <-tick.C:
			_, rss := procStat(c.pid)
			res.rssPeak = max(res.rssPeak, rss)
			fmt.Fprintf(os.Stderr, "\r%3.0fs", time.Since(t0).Seconds())
		case <-over:
			done = true
		}
	}
	fmt.Fprintln(os.Stderr)
	measuring.Store(false)
	end := time.Now()
	res.wall = end.Sub(t0)
	cpu1, rss := procStat(c.pid)
	res.cpu, res.rssEnd = cpu1-cpu0, rss
	res.rssPeak = max(res.rssPeak, rss)
	mu.Lock()
	all := slices.Clone(players)
	mu.Unlock()
	res.connected = len(all)
	res.viewers = viewerResults(all, end)
	for _, p := range all {
		w, g := p.loss()
		p.mu.Lock()
		res.packets += p.packets
		res.bytes += p.bytes
		res.delays = append(res.delays, p.delays...)
		p.mu.Unlock()
		res.lossWant += w
		res.lossGot += g
	}
	for _, p := range initialPlayers {
		p.mu.Lock()
		if p.firstFrame > 0 {
			res.initial = append(res.initial, p.firstFrame)
		}
		p.mu.Unlock()
	}
	for _, p := range latePlayers {
		p.mu.Lock()
		if p.firstFrame > 0 {
			res.lateFirst = append(res.lateFirst, p.firstFrame)
			res.lateAfterUp = append(res.lateAfterUp, p.firstAfterUp)
		}
		p.mu.Unlock()
	}
	return res, nil
}

// procStat is a process's CPU time (user+system) and RSS from /proc.
func procStat(pid int) (time.Duration, int64) { return procstat.Read(pid) }
