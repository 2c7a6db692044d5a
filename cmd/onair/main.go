// Command onair runs OnAir: every role at once with an embedded etcd
// (`onair dev`), or one role per process against an etcd cluster.
//
//	onair dev                       everything on a laptop
//	onair auth|room|stream|media    one service against --etcd-endpoints
//	onair gateway                   REST, WHIP/WHEP and OpenAPI on --http-addr
//	onair token --app-id ...        mint a Token04 token
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

const usage = `onair runs the OnAir live-streaming backend.

usage:
  onair dev       run every role and an embedded etcd in one process
  onair auth      run the auth service
  onair room      run the room service
  onair stream    run the stream registry
  onair media     run a media edge
  onair gateway   run the REST / WHIP / WHEP gateway
  onair token     mint a Token04 token
  onair etcd      run one member of an etcd cluster (embedded etcd)
  onair nats      run one member of a NATS cluster (carries room messages between room replicas)
  onair bench     load generators ("onair bench" lists them)
  onair cluster   run a local cluster: 3 etcd members, 3 NATS servers, 2 replicas of each service and the gateway as processes

Run "onair <command> -h" for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "dev":
		err = runDev(ctx, args)
	case "auth", "room", "stream", "media":
		err = runRole(ctx, cmd, args)
	case "gateway":
		err = runGateway(ctx, args)
	case "token":
		err = runToken(os.Stdout, args)
	case "etcd":
		err = runEtcd(ctx, args)
	case "cluster":
		err = runCluster(ctx, args)
	case "nats":
		err = runNATS(ctx, args)
	case "bench":
		err = runBench(ctx, args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "onair: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		slog.Error("onair "+cmd+" failed", "err", err)
		os.Exit(1)
	}
}

// benchCommands are the subcommands of `onair bench`; each bench file adds
// its own in an init function (bench_messages.go: "messages").
var benchCommands = map[string]func(ctx context.Context, args []string) error{}

func runBench(ctx context.Context, args []string) error {
	names := make([]string, 0, len(benchCommands))
	for name := range benchCommands {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(args) == 0 || benchCommands[args[0]] == nil {
		return fmt.Errorf("usage: onair bench <%s> [flags]", strings.Join(names, "|"))
	}
	return benchCommands[args[0]](ctx, args[1:])
}

func setupLogging(level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
	return nil
}
