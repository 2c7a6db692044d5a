// Command lkbench runs OnAir's shaped-link player measurement against a
// LiveKit server, for side-by-side numbers with `onair bench fanout`: one
// publisher sends three VP8 simulcast layers with LiveKit's Go SDK, and
// --players players, each on a --shape link (netshape: a tc rate cap on its
// pinned UDP port, delay and loss in its socket), subscribe with the Go SDK
// asking for --layer. Each player's video is measured by bench/viewer's
// Meter, the one OnAir's bench uses, and printed as the same table.
//
// A capped link needs a network namespace whose only interface is lo (run it
// under `unshare -n`, with the server in the same namespace); see
// bench/livekit/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/onair-dev/onair/bench/netshape"
)

const usage = `lkbench publishes three VP8 simulcast layers to a LiveKit server and plays
them with N players on shaped links, measuring what each viewer sees.

usage:
  lkbench [--server PATH | --url ws://127.0.0.1:7880] [--api-key devkey --api-secret secret]
          [--players 3] [--shape LINK] [--warmup 10s] [--duration 60s]

It starts --server (shared/peers/livekit/build.sh's livekit-server) with
livekit.yaml for the run, or with --server "" uses the one at --url. The
publisher sends 1280x720 at --bitrate, 640x360 and 320x180 at 24 % and 6 % of
it, 30 fps (generated frames: valid VP8 headers and filler), a keyframe on
each layer's first frame, every --gop and whenever that layer gets a PLI or
FIR, plus Opus silence. Players join, warm up for --warmup, then are measured
for --duration. A capped --shape needs a network namespace whose only
interface is lo (unshare -n; run.sh makes one), with the server inside it.

` + netshape.LinkSyntax + "\n\n"

// config is one run.
type config struct {
	url, apiKey, apiSecret, room string
	players                      int
	link                         netshape.Link
	warmup, duration, gop        time.Duration
	pliAfter                     time.Duration
	bitrate                      int
	// server, when set, is the livekit-server lkbench starts (and stops)
	// with livekit.yaml; serverLog its log file.
	server, serverLog string
	quality           livekit.VideoQuality
	port              int
	verbose           bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "lkbench:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if !c.verbose {
		// The SDK logs every pion ICE and DTLS event at info.
		lksdk.SetLogger(protoLogger.GetDiscardLogger())
	}
	if c.server != "" {
		u, _ := url.Parse(c.url)
		srv, err := startServer(ctx, c.server, c.serverLog, u.Host, log)
		if err != nil {
			return err
		}
		defer func() {
			srv.Stop()
			fmt.Fprintln(stderr, "lkbench: livekit-server log:", srv.logPath)
		}()
	}
	res, err := bench(ctx, c, log)
	if err != nil {
		return err
	}
	return res.print(stdout, c)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("lkbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	var c config
	var shape, quality string
	fs.StringVar(&c.url, "url", "ws://127.0.0.1:7880", "the LiveKit server's URL")
	fs.StringVar(&c.apiKey, "api-key", "devkey", "API key (livekit-server --dev: devkey)")
	fs.StringVar(&c.apiSecret, "api-secret", "secret", "API secret (livekit-server --dev: secret)")
	fs.StringVar(&c.room, "room", "onair-bench", "room to publish and play in")
	fs.IntVar(&c.players, "players", 3, "players")
	fs.StringVar(&shape, "shape", "clean", "every player's link (syntax above)")
	fs.DurationVar(&c.warmup, "warmup", 10*time.Second, "time from the players joining to the measurement")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "measurement time")
	fs.DurationVar(&c.gop, "gop", 2*time.Second, "also send a keyframe on every layer this often, as onair bench fanout does (0: only on the first frame and on request)")
	fs.IntVar(&c.bitrate, "bitrate", 2_400_000, "the 1280x720 layer's bits per second; 640x360 and 320x180 get 24 % and 6 % of it (onair bench fanout's)")
	fs.StringVar(&c.server, "server", defaultServer(), "the livekit-server binary to start for the run with livekit.yaml (empty: use the server already at --url)")
	fs.StringVar(&c.serverLog, "server-log", "", "the started server's log file (default: in a temporary directory)")
	fs.DurationVar(&c.pliAfter, "pli-after", 0, "a player asks for a keyframe when packets arrive but no frame has rendered for this long, and again as often while that lasts, as a browser does (0: never; onair bench fanout's players always ask, after 500 ms, and scripts/bench-shaped.sh gives 500ms)")
	fs.StringVar(&quality, "layer", "high", "the quality players ask for (SetVideoQuality): high, medium or low; auto is high, since LiveKit's allocator picks the best layer that fits up to the one asked for")
	fs.Bool("simulcast", true, "accepted for onair bench fanout's command line: the publisher always sends three layers")
	fs.IntVar(&c.port, "port-base", 41000, "player i's pinned UDP port is port-base+i")
	fs.BoolVar(&c.verbose, "v", false, "log the players' connection and quality events")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.link, err = netshape.ParseLink(shape); err != nil {
		return c, err
	}
	q, ok := map[string]livekit.VideoQuality{"auto": livekit.VideoQuality_HIGH, "high": livekit.VideoQuality_HIGH,
		"medium": livekit.VideoQuality_MEDIUM, "low": livekit.VideoQuality_LOW}[strings.ToLower(quality)]
	if !ok {
		return c, fmt.Errorf("--layer %q: auto, high, medium or low", quality)
	}
	c.quality = q
	switch {
	case c.bitrate < 100_000:
		return c, errors.New("--bitrate must be at least 100000")
	case c.players < 1 || c.duration <= 0 || c.warmup < 0 || c.gop < 0 || c.pliAfter < 0:
		return c, errors.New("--players and --duration must be positive, --warmup, --gop and --pli-after not negative")
	case c.port < 1024 || c.port+c.players > 65535:
		return c, fmt.Errorf("--port-base %d: the players' ports must lie in 1024-65535", c.port)
	case c.apiKey == "" || c.apiSecret == "":
		return c, errors.New("--api-key and --api-secret are required")
	}
	if u, err := url.Parse(c.url); err != nil || (u.Scheme != "ws" && u.Scheme != "wss" && u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("--url %q is not a ws(s) or http(s) URL", c.url)
	}
	return c, nil
}
