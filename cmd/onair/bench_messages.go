package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/procstat"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

func init() { benchCommands["messages"] = runBenchMessages }

const messagesUsage = `onair bench messages logs real SDK engines into rooms (one sender and N
receivers per room), sends broadcast messages at a steady rate and reports
what arrived and how late.

usage: onair bench messages --server <grpc addrs> --app-id <id> --app-secret <secret> [flags]
       onair bench messages --centrifugo ws://127.0.0.1:8000/connection/websocket [flags]

With --centrifugo the same rooms, receivers and rate run against a
Centrifugo server instead (a peer, for comparison in one sitting): every
receiver and sender is a centrifuge-go client with its own connection
(protobuf protocol), a room is a channel, a receiver subscribes to it and
the sender publishes into it without subscribing (the server needs
client.insecure and channel.without_namespace.allow_publish_for_client and
allow_subscribe_for_client: --centrifugo-config prints such a configuration).

`

type messagesConfig struct {
	server         string
	appID          uint32
	secret         string
	rooms          int
	receivers      int
	rate           float64
	duration, wait time.Duration
	settle         time.Duration
	pids           []int
	prefix         string
	// centrifugo, when set, is a Centrifugo server's WebSocket endpoint:
	// the run goes there instead of to OnAir.
	centrifugo string
}

func runBenchMessages(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench messages", flag.ContinueOnError)
	var c messagesConfig
	fs.StringVar(&c.server, "server", "127.0.0.1:9090", "gRPC address(es) of OnAir's room service, comma-separated (EngineProfile.Server); engines are spread over them")
	appID := fs.Uint("app-id", 0, "AppID")
	fs.StringVar(&c.secret, "app-secret", "", "the app's ServerSecret, to mint the engines' tokens (ONAIR_APP_SECRET)")
	fs.IntVar(&c.rooms, "rooms", 100, "rooms")
	fs.IntVar(&c.receivers, "receivers", 4, "receivers per room (plus one sender)")
	fs.Float64Var(&c.rate, "rate", 5, "messages per second per room")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to send")
	fs.DurationVar(&c.wait, "drain", 2*time.Second, "how long to wait for late messages after the last send")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "pause between the logins and the first message (the logins' own work, e.g. callbacks, settles)")
	pids := fs.String("server-pid", "", "comma-separated PIDs of the server processes (room replicas, NATS servers, ...), for CPU per 1,000 deliveries: summed, and shown by process (from /proc)")
	fs.StringVar(&c.prefix, "room-prefix", "bench-msg", "room ID prefix (runs side by side need different ones)")
	printConfig := fs.Bool("centrifugo-config", false, "print the Centrifugo configuration --centrifugo expects, and exit")
	fs.StringVar(&c.centrifugo, "centrifugo", "", "run against this Centrifugo WebSocket endpoint (ws://host:port/connection/websocket) instead of OnAir")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), messagesUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *printConfig {
		fmt.Println(centrifugoBenchConfig)
		return nil
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	c.appID = uint32(*appID)
	if c.centrifugo == "" && (c.appID == 0 || c.secret == "") {
		return errors.New("--app-id and --app-secret are required")
	}
	if c.rooms <= 0 || c.receivers <= 0 || c.rate <= 0 {
		return errors.New("--rooms, --receivers and --rate must be positive")
	}
	for p := range strings.SplitSeq(*pids, ",") {
		if p = strings.TrimSpace(p); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				return fmt.Errorf("--server-pid %q: %w", p, err)
			}
			c.pids = append(c.pids, n)
		}
	}
	res, err := benchMessages(ctx, c, os.Stderr)
	if err != nil {
		return err
	}
	res.print(os.Stdout, c)
	return nil
}

// msgReceiver records when each message arrived.
type msgReceiver struct {
	express.BaseEventHandler
	mu     sync.Mutex
	delays []time.Duration
	seen   map[string]bool
	dups   int
	got    *atomic.Int64
}

func (r *msgReceiver) OnIMRecvBroadcastMessage(msgs []express.BroadcastMessageInfo, _ string) {
	now := time.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		// "<sender>/<seq>/<send time ns>"
		parts := strings.Split(m.Message, "/")
		if len(parts) != 3 {
			continue
		}
		key := parts[0] + "/" + parts[1]
		if r.seen[key] {
			r.dups++
			continue
		}
		r.seen[key] = true
		sent, _ := strconv.ParseInt(parts[2], 10, 64)
		r.delays = append(r.delays, time.Duration(now-sent))
		r.got.Add(1)
	}
}

type messagesResult struct {
	sent, refused, failed int64
	delivered, dups       int64
	expected              int64
	delays                []time.Duration
	sendTimes             []time.Duration
	cpu                   time.Duration
	// cpuPer is cpu by process, in the order of --server-pid.
	cpuPer  []time.Duration
	elapsed time.Duration
}

func benchMessages(ctx context.Context, c messagesConfig, progress io.Writer) (*messagesResult, error) {
	servers := strings.Split(c.server, ",")
	var got atomic.Int64
	var engines []*express.Engine
	defer func() {
		for _, e := range engines {
			e.DestroyEngine(nil)
		}
	}()
	type room struct {
		id   string
		send func(ctx context.Context, msg string) error
		recv []*msgReceiver
	}
	login := func(roomID, user string, h express.EventHandler, i int) (*express.Engine, error) {
		// Spread engines over the servers: the first choice rotates.
		order := append(slices.Clone(servers[i%len(servers):]), servers[:i%len(servers)]...)
		e, err := express.CreateEngine(express.EngineProfile{AppID: c.appID, Server: strings.Join(order, ",")}, h)
		if err != nil {
			return nil, err
		}
		engines = append(engines, e)
		tok, err := token04.Mint(c.appID, user, c.secret, 2*time.Hour, nil)
		if err != nil {
			return nil, err
		}
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return e, e.LoginRoom(lctx, roomID, express.User{UserID: user, UserName: user}, express.RoomConfig{Token: tok})
	}
	fmt.Fprintf(progress, "logging in %d engines (%d rooms x (%d receivers + 1 sender))\n", c.rooms*(c.receivers+1), c.rooms, c.receivers)
	rooms := make([]*room, c.rooms)
	if c.centrifugo != "" {
		cf := newCentrifugoClients(c.centrifugo)
		defer cf.close()
		for i := range c.rooms {
			r := &room{id: fmt.Sprintf("%s-%d", c.prefix, i)}
			for range c.receivers {
				rec := &msgReceiver{seen: map[string]bool{}, got: &got}
				if err := cf.receiver(ctx, r.id, rec); err != nil {
					return nil, err
				}
				r.recv = append(r.recv, rec)
			}
			send, err := cf.sender(ctx, r.id)
			if err != nil {
				return nil, err
			}
			r.send = send
			rooms[i] = r
		}
	}
	n := 0
	for i := range c.rooms {
		if c.centrifugo != "" {
			break
		}
		r := &room{id: fmt.Sprintf("%s-%d", c.prefix, i)}
		for j := range c.receivers {
			rec := &msgReceiver{seen: map[string]bool{}, got: &got}
			if _, err := login(r.id, fmt.Sprintf("recv-%d-%d", i, j), rec, n); err != nil {
				return nil, fmt.Errorf("login receiver %d of room %s: %w", j, r.id, err)
			}
			n++
			r.recv = append(r.recv, rec)
		}
		// The sender on another server than the room's first receiver.
		e, err := login(r.id, fmt.Sprintf("send-%d", i), &express.BaseEventHandler{}, n)
		if err != nil {
			return nil, fmt.Errorf("login sender of room %s: %w", r.id, err)
		}
		n++
		r.send = func(ctx context.Context, msg string) error {
			_, err := e.SendBroadcastMessage(ctx, r.id, msg)
			return err
		}
		rooms[i] = r
	}
	// Let every event stream, and what the logins set off, settle before
	// the clock starts.
	fmt.Fprintf(progress, "logged in; sending in %s\n", c.settle)
	time.Sleep(c.settle)

	res := &messagesResult{}
	var sent, refused, failed atomic.Int64
	var sendMu sync.Mutex
	var sendTimes []time.Duration
	cpu0 := cpuEach(c.pids)
	start := time.Now()
	sctx, stop := context.WithTimeout(ctx, c.duration)
	defer stop()
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / c.rate)
	for i, r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Rooms start spread over one interval, not in lockstep.
			next := start.Add(interval * time.Duration(i) / time.Duration(len(rooms)))
			for seq := 0; ; seq++ {
				if d := time.Until(next); d > 0 {
					select {
					case <-sctx.Done():
						return
					case <-time.After(d):
					}
				}
				if sctx.Err() != nil {
					return
				}
				next = next.Add(interval)
				t0 := time.Now()
				msg := fmt.Sprintf("%s/%d/%d", r.id, seq, t0.UnixNano())
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := r.send(cctx, msg)
				cancel()
				sendMu.Lock()
				sendTimes = append(sendTimes, time.Since(t0))
				sendMu.Unlock()
				switch {
				case err == nil:
					sent.Add(1)
				case express.ErrorCode(err) == int(errcode.TooManyRequests):
					refused.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	lastGot := int64(0)
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			g := got.Load()
			fmt.Fprintf(progress, "%5.0fs  sent %d  delivered %d (%d/s)  refused %d  failed %d\n",
				time.Since(start).Seconds(), sent.Load(), g, g-lastGot, refused.Load(), failed.Load())
			lastGot = g
		}
	}
	tick.Stop()
	// Late messages: wait until everything accepted arrived, or the drain.
	expected := sent.Load() * int64(c.receivers)
	deadline := time.Now().Add(c.wait)
	for got.Load() < expected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	res.elapsed = time.Since(start)
	for i, t := range cpuEach(c.pids) {
		res.cpuPer = append(res.cpuPer, t-cpu0[i])
		res.cpu += t - cpu0[i]
	}
	res.sent, res.refused, res.failed, res.expected = sent.Load(), refused.Load(), failed.Load(), expected
	for _, r := range rooms {
		for _, rec := range r.recv {
			rec.mu.Lock()
			res.delays = append(res.delays, rec.delays...)
			res.dups += int64(rec.dups)
			rec.mu.Unlock()
		}
	}
	res.delivered = int64(len(res.delays))
	res.sendTimes = sendTimes
	return res, nil
}

// cpuEach is the CPU time each process has used so far.
func cpuEach(pids []int) []time.Duration { return procstat.CPU(pids) }

func (r *messagesResult) print(w io.Writer, c messagesConfig) {
	slices.Sort(r.delays)
	pct := func(p float64) string {
		if len(r.delays) == 0 {
			return "-"
		}
		d := r.delays[min(len(r.delays)-1, int(p*float64(len(r.delays))))]
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	maxd := "-"
	if len(r.delays) > 0 {
		maxd = fmt.Sprintf("%.2f ms", float64(r.delays[len(r.delays)-1])/float64(time.Millisecond))
	}
	fmt.Fprintf(w, "\nonair bench messages: %d rooms x %d receivers, %.1f msg/s per room (%.0f/s offered), %s\n\n",
		c.rooms, c.receivers, c.rate, c.rate*float64(c.rooms), c.duration)
	row := func(k, v string) { fmt.Fprintf(w, "  %-28s %s\n", k, v) }
	row("sent (accepted)", fmt.Sprintf("%d (%.0f/s)", r.sent, float64(r.sent)/c.duration.Seconds()))
	row("refused (rate limit)", strconv.FormatInt(r.refused, 10))
	row("failed", strconv.FormatInt(r.failed, 10))
	row("delivered", fmt.Sprintf("%d of %d (%.0f/s)", r.delivered, r.expected, float64(r.delivered)/c.duration.Seconds()))
	row("lost", strconv.FormatInt(max(r.expected-r.delivered, 0), 10))
	row("duplicates", strconv.FormatInt(r.dups, 10))
	row("delay p50 / p99 / max", pct(0.50)+" / "+pct(0.99)+" / "+maxd)
	if len(r.sendTimes) > 0 {
		slices.Sort(r.sendTimes)
		q := func(p float64) string {
			d := r.sendTimes[min(len(r.sendTimes)-1, int(p*float64(len(r.sendTimes))))]
			return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
		}
		row("send call p50 / p99", q(0.5)+" / "+q(0.99))
	}
	if len(c.pids) > 0 {
		per := "-"
		if r.delivered > 0 {
			per = fmt.Sprintf("%.4f s", r.cpu.Seconds()/float64(r.delivered)*1000)
		}
		row("server CPU", fmt.Sprintf("%.2f s over %d processes", r.cpu.Seconds(), len(c.pids)))
		if len(c.pids) > 1 {
			// Which process the CPU went to: room replicas and NATS
			// servers, say, are told apart.
			var each []string
			for i, p := range c.pids {
				each = append(each, fmt.Sprintf("%d: %.2f s", p, r.cpuPer[i].Seconds()))
			}
			row("  by process (pid)", strings.Join(each, ", "))
		}
		row("server CPU / 1,000 deliveries", per)
	}
	fmt.Fprintln(w)
}
