package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/onair-dev/onair/internal/loginbench"
)

func init() { benchCommands["logins"] = runBenchLogins }

const loginsUsage = `onair bench logins: real SDK engines, each with its own connection, log
into rooms and out again, --workers at a time, for --duration, and the run
reports what the room plane paid per cycle: cycles/s, login latency, errors
by vendor code, etcd revisions per cycle (--etcd-endpoints) and server CPU
per cycle (--server-pid, from /proc).

usage: onair bench logins --server <grpc addrs> --app-id <id> --app-secret <secret> [flags]

On onair cluster: --server is the room replicas' addresses, --etcd-endpoints
the members' client URLs, and --server-pid every process of the cluster
(its banner lists them).

--callback-listen 127.0.0.1:0 starts a receiver of the app's business-server
callbacks, points the app's callback URL at it for the run (admin RPC on
--auth-server with --admin-key; a loopback URL needs the auth service in dev
mode, as onair dev runs it) and reports the callbacks that arrived, their
delay from event_time_ms and the etcd outbox's depth.

A crowd: --stay --rooms 1 --users 10000 --user-updates --see-all --lean
logs 10,000 users into one room, waits until every one was told of all
the others, and reports how long after the last login that took; with
--heap-pprof (the room replicas' pprof addresses) also their heap per
idle session.

`

// pidList is a repeatable flag of process IDs; each value may itself be a
// comma-separated list.
type pidList []int

func (p *pidList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *pidList) Set(v string) error {
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a process ID", f)
		}
		*p = append(*p, n)
	}
	return nil
}

// splitList is the non-empty comma-separated fields of s.
func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseLogins turns the command line into a run's config.
func parseLogins(args []string, output io.Writer) (loginbench.Config, error) {
	fs := flag.NewFlagSet("bench logins", flag.ContinueOnError)
	fs.SetOutput(output)
	var c loginbench.Config
	server := fs.String("server", "127.0.0.1:9090", "gRPC address(es) of the room service, comma-separated (EngineProfile.Server); engines are spread over them")
	appID := fs.Uint("app-id", 0, "AppID")
	fs.StringVar(&c.Secret, "app-secret", "", "the app's ServerSecret, to mint the users' tokens (ONAIR_APP_SECRET)")
	fs.IntVar(&c.Workers, "workers", 32, "engines logging in at the same time, each with its own connection")
	fs.Float64Var(&c.Rate, "rate", 0, "cycles started per second, all workers together (0: as fast as the workers go); measure latency at a rate below the maximum")
	fs.IntVar(&c.Rooms, "rooms", 100, "rooms the cycles go to, round robin (1: a single room)")
	fs.DurationVar(&c.Duration, "duration", 15*time.Second, "how long to run")
	fs.BoolVar(&c.Stay, "stay", false, "users stay logged in (rooms fill up): a cycle is a login with a new engine; they log out after the run")
	fs.BoolVar(&c.FreshEngines, "fresh-engines", false, "a new engine (a new connection) for every cycle, not one per worker")
	fs.BoolVar(&c.UserUpdates, "user-updates", false, "log in with IsUserStatusNotify: every engine is told who comes and goes")
	fs.DurationVar(&c.CallTimeout, "call-timeout", 10*time.Second, "deadline of each LoginRoom and LogoutRoom call")
	fs.StringVar(&c.RoomPrefix, "room-prefix", "bench-login", "prefix of the room and user IDs (runs side by side need different ones)")
	var pids pidList
	fs.Var(&pids, "server-pid", "PID(s) of the server processes to charge CPU to (from /proc), comma-separated or repeated")
	etcd := fs.String("etcd-endpoints", "", "etcd client URLs, comma-separated: etcd revisions per cycle and, with callbacks, the outbox depth")
	cbListen := fs.String("callback-listen", "", "start a callback receiver on this loopback address (127.0.0.1:0 picks a port) and point the app's callback URL at it for the run")
	authServer := fs.String("auth-server", "", "gRPC address of the auth service, for --callback-listen (default: the first --server)")
	adminKey := fs.String("admin-key", "", "admin key, for --callback-listen (ONAIR_ADMIN_KEY)")
	fs.IntVar(&c.Users, "users", 0, "with --stay: stop after this many logins (--duration still bounds the run)")
	fs.BoolVar(&c.Lean, "lean", false, "with --stay --user-updates: lean clients (own connection, login, event stream, heartbeats; they count users, keep no list) instead of SDK engines, for crowds whose engines would not fit in the bench")
	fs.BoolVar(&c.SeeAll, "see-all", false, "with --stay --user-updates: after the logins, wait until every user was told of every other user of its room, and report how long after the last login")
	fs.DurationVar(&c.Hold, "hold", 0, "with --see-all: keep the users logged in this long after the measurements (to profile the replicas)")
	fs.DurationVar(&c.SeeTimeout, "see-timeout", time.Minute, "with --see-all: how long to wait")
	heapPprof := fs.String("heap-pprof", "", "with --see-all: the room replicas' pprof addresses (host:port, comma-separated; onair cluster --pprof-base-port): heap per session from their heaps before the logins and after")
	fs.DurationVar(&c.Drain, "drain", 10*time.Second, "with --callback-listen: how long to wait after the run for its logins' and logouts' callbacks")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), loginsUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := applyEnv(fs); err != nil {
		return c, err
	}
	if *appID > 1<<32-1 {
		return c, fmt.Errorf("--app-id %d out of range", *appID)
	}
	c.AppID = uint32(*appID)
	c.Servers = splitList(*server)
	c.EtcdEndpoints = splitList(*etcd)
	c.PIDs = pids
	c.HeapPprof = splitList(*heapPprof)
	switch {
	case c.AppID == 0 || c.Secret == "":
		return c, errors.New("--app-id and --app-secret are required")
	case len(c.Servers) == 0:
		return c, errors.New("--server is required")
	case c.Workers <= 0 || c.Rooms <= 0 || c.Duration <= 0 || c.CallTimeout <= 0:
		return c, errors.New("--workers, --rooms, --duration and --call-timeout must be positive")
	case c.Rate < 0:
		return c, errors.New("--rate must not be negative")
	case (c.Users > 0 || c.Lean || c.SeeAll) && !c.Stay:
		return c, errors.New("--users, --lean and --see-all need --stay")
	case (c.Lean || c.SeeAll) && !c.UserUpdates:
		return c, errors.New("--lean and --see-all need --user-updates")
	case len(c.HeapPprof) > 0 && !c.SeeAll:
		return c, errors.New("--heap-pprof needs --see-all")
	}
	if *cbListen != "" {
		cb := &loginbench.CallbackConfig{Listen: *cbListen, AuthServer: *authServer, AdminKey: *adminKey}
		if cb.AuthServer == "" {
			cb.AuthServer = c.Servers[0]
		}
		if cb.AdminKey == "" {
			return c, errors.New("--callback-listen needs --admin-key (or ONAIR_ADMIN_KEY) to point the app's callbacks at the receiver")
		}
		c.Callbacks = cb
	}
	return c, nil
}

func runBenchLogins(ctx context.Context, args []string) error {
	c, err := parseLogins(args, os.Stderr)
	if err != nil {
		return err
	}
	res, err := loginbench.Run(ctx, c, os.Stderr)
	if err != nil {
		return err
	}
	res.Print(os.Stdout)
	return nil
}
