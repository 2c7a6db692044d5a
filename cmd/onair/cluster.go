package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/supervise"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	"github.com/onair-dev/onair/services/auth"
	"github.com/onair-dev/onair/token04"
)

// Port layout of `onair cluster`, as offsets from --base-port.
const (
	etcdPortOffset     = 0  // member i: client base+2i, peer base+2i+1
	grpcPortOffset     = 10 // service replicas in start order
	roleHTTPPortOffset = 20 // their /metrics and /healthz
	mediaUDPPortOffset = 28 // media replicas' UDP ports (--media-udp-port)
	natsPortOffset     = 30 // NATS server i: client base+30+2i, routes base+31+2i
	clusterPortSpan    = 36
	// clusterNATSUser is the user the room replicas give NATS; its
	// password (the cluster's internal key) goes in the environment.
	clusterNATSUser  = "onair"
	clusterTokenUser = "cluster-user"
)

// clusterProc is one child process of the cluster.
type clusterProc struct {
	Name       string `json:"name"`
	Role       string `json:"role"`
	PID        int    `json:"pid"`
	GRPCAddr   string `json:"grpc_addr,omitempty"`
	HTTPAddr   string `json:"http_addr,omitempty"`
	ClientAddr string `json:"client_addr,omitempty"`
	PeerAddr   string `json:"peer_addr,omitempty"`

	args []string
	// env is added to the inherited environment: the keys go here, not
	// in args, which every user of the machine can read (ps).
	env []string
	// proc is the running process, once started.
	proc *supervise.Proc
}

func (p *clusterProc) alive() bool { return p.proc != nil && p.proc.Alive() }

func (p *clusterProc) startFailed() error {
	return fmt.Errorf("%s exited while starting (%s); see its log above", p.Name, p.proc.Status())
}

// clusterSummary is printed as one JSON line after "CLUSTER " for scripts
// and tests.
type clusterSummary struct {
	DataDir       string         `json:"data_dir"`
	EtcdEndpoints []string       `json:"etcd_endpoints"`
	NATSURLs      []string       `json:"nats_urls"`
	Gateway       string         `json:"gateway"`
	AppID         uint32         `json:"app_id"`
	ServerSecret  string         `json:"server_secret"`
	AdminKey      string         `json:"admin_key"`
	TokenUser     string         `json:"token_user"`
	Token         string         `json:"token"`
	Processes     []*clusterProc `json:"processes"`
}

type clusterRunner struct {
	exe      string
	out      *lockedWriter
	nameW    int
	procs    []*clusterProc
	groups   [][]*clusterProc // start order; stopped in reverse
	stopWait time.Duration
	// members supervises the processes: the first to exit on its own
	// fails the start, and afterwards stops the cluster unless keepGoing.
	members supervise.Group
	// keepGoing keeps the cluster running when a member exits after the
	// start (--keep-going, for failover drills).
	keepGoing bool
	// localCallbacks lets apps send callbacks to loopback addresses
	// (--allow-local-callbacks: a callback receiver on this machine).
	localCallbacks bool
	// pprofBase, when set, gives each etcd member and service replica a
	// loopback /debug/pprof/ port from it, in start order (profiling).
	pprofBase, profiled int
}

// runCluster runs a three-member etcd, a three-server NATS cluster (room
// messages), two replicas of every service and the gateway as separate
// processes of this binary on 127.0.0.1.
func runCluster(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	dataDir := fs.String("data-dir", filepath.Join(".onair", "cluster"), "where the etcd members keep their data and the cluster its app and keys")
	basePort := fs.Int("base-port", 23790, fmt.Sprintf("first of the %d consecutive 127.0.0.1 ports used by etcd and the services", clusterPortSpan))
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "address of the gateway (REST, WHIP/WHEP, OpenAPI)")
	appID := fs.Uint("app-id", 0, "AppID to seed (default: a generated one, kept in the data dir)")
	appSecret := fs.String("app-secret", "", "ServerSecret to seed with --app-id (32 characters; default generated)")
	logLevel := fs.String("log-level", "info", "log level of the cluster and its processes: debug, info, warn or error")
	leaseTTL := fs.Duration("lease-ttl", 5*time.Second, "etcd lease TTL of every service replica")
	drain := fs.Duration("drain-timeout", 5*time.Second, "how long each process gets to drain on shutdown before it is killed (plus 5s)")
	pprofBase := fs.Int("pprof-base-port", 0, "when set, etcd members and service replicas serve /debug/pprof/ on 127.0.0.1 ports from this one, in start order (etcd n1-n3, then the roles); 0: off")
	startTimeout := fs.Duration("start-timeout", 90*time.Second, "how long the cluster may take to come up")
	localCallbacks := fs.Bool("allow-local-callbacks", false, "let apps send callbacks to loopback addresses (a receiver on this machine, e.g. bench logins --callback-listen); never in production")
	keepGoing := fs.Bool("keep-going", false, "keep the cluster running when one of its processes exits after the start (for failover drills); by default the cluster stops and fails, naming the process")
	if err := parse(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	out := &lockedWriter{w: os.Stderr}
	slog.SetDefault(slog.New(slog.NewTextHandler(&prefixWriter{out: out, prefix: "cluster | "}, &slog.HandlerOptions{Level: level})))
	r := &clusterRunner{stopWait: *drain + 5*time.Second, keepGoing: *keepGoing, localCallbacks: *localCallbacks}
	// The flags are checked against the port plan before anything is
	// started or written: a clash found later costs a member.
	if err := checkClusterFlags(*basePort, *httpAddr); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if *dataDir, err = filepath.Abs(*dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	state, err := loadLocalApp(*dataDir, "cluster.json", uint32(*appID), *appSecret, "")
	if err != nil {
		return err
	}
	if err := checkPortsFree(*basePort, *httpAddr); err != nil {
		return err
	}

	r.exe, r.out, r.pprofBase = exe, out, *pprofBase
	r.plan(*basePort, *httpAddr, *dataDir, state, *logLevel, *leaseTTL, *drain)
	startCtx, cancel := context.WithTimeout(ctx, *startTimeout)
	defer cancel()
	summary, err := r.start(startCtx, state)
	if err != nil {
		r.stopAll()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	summary.DataDir = *dataDir
	summary.Gateway = "http://" + *httpAddr
	printClusterBanner(os.Stdout, summary)
	b, _ := json.Marshal(summary)
	fmt.Fprintf(os.Stdout, "CLUSTER %s\n", b)
	slog.Info("onair cluster is up; Ctrl-C stops it", "processes", len(summary.Processes))

	failed := r.members.Failed()
	if r.keepGoing {
		failed = nil // a member's exit is logged, and the rest runs on
	}
	select {
	case <-ctx.Done():
		slog.Info("stopping the cluster")
		r.stopAll()
		slog.Info("cluster stopped")
		return nil
	case <-failed:
		err := r.members.Err()
		slog.Error("stopping the cluster: one of its processes exited", "err", err)
		r.stopAll()
		slog.Info("cluster stopped")
		return fmt.Errorf("%w; the cluster was stopped (see its log above)", err)
	}
}

// plan lays out the processes and their flags. Every process is needed: one
// that does not come up fails the cluster's start.
func (r *clusterRunner) plan(base int, httpAddr, dataDir string, st *localApp, logLevel string, leaseTTL, drain time.Duration) {
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	var etcd []*clusterProc
	var initial, endpoints []string
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		p := &clusterProc{Name: "etcd-" + strconv.Itoa(i+1), Role: "etcd",
			ClientAddr: addr(base + etcdPortOffset + 2*i), PeerAddr: addr(base + etcdPortOffset + 2*i + 1)}
		initial = append(initial, name+"=http://"+p.PeerAddr)
		endpoints = append(endpoints, "http://"+p.ClientAddr)
		p.args = []string{"etcd", "--name", name, "--data-dir", filepath.Join(dataDir, "etcd-"+name),
			"--client-addr", p.ClientAddr, "--peer-addr", p.PeerAddr, "--log-level", logLevel}
		etcd = append(etcd, p)
	}
	for _, p := range etcd {
		p.args = append(p.args, "--initial-cluster", strings.Join(initial, ","))
	}
	r.add(etcd...)

	// NATS: three servers routed to each other; the room replicas
	// connect to any of them (and fail over) with the cluster's user.
	natsPassword := envName("nats-password") + "=" + st.InternalKey
	var natsGroup []*clusterProc
	var natsURLs, natsRoutes []string
	for i := range 3 {
		p := &clusterProc{Name: "nats-" + strconv.Itoa(i+1), Role: "nats",
			ClientAddr: addr(base + natsPortOffset + 2*i), PeerAddr: addr(base + natsPortOffset + 2*i + 1)}
		natsURLs = append(natsURLs, "nats://"+p.ClientAddr)
		natsRoutes = append(natsRoutes, "nats-route://"+p.PeerAddr)
		natsGroup = append(natsGroup, p)
	}
	for i, p := range natsGroup {
		var others []string
		for j, r := range natsRoutes {
			if j != i {
				others = append(others, r)
			}
		}
		p.args = []string{"nats", "--name", fmt.Sprintf("nats%d", i+1), "--client-addr", p.ClientAddr, "--cluster-addr", p.PeerAddr,
			"--routes", strings.Join(others, ","), "--nats-user", clusterNATSUser, "--log-level", logLevel}
		p.env = []string{natsPassword}
	}
	r.add(natsGroup...)

	common := []string{"--etcd-endpoints", strings.Join(endpoints, ","),
		"--lease-ttl", leaseTTL.String(), "--drain-timeout", drain.String(), "--log-level", logLevel}
	internalKey := envName("internal-key") + "=" + st.InternalKey
	roles := []string{"auth", "stream", "room", "media"}
	slot := 0
	for _, role := range roles {
		var group []*clusterProc
		for i := range 2 {
			p := &clusterProc{Name: fmt.Sprintf("%s-%d", role, i+1), Role: role,
				GRPCAddr: addr(base + grpcPortOffset + slot), HTTPAddr: addr(base + roleHTTPPortOffset + slot)}
			slot++
			p.args = append([]string{role, "--grpc-addr", p.GRPCAddr, "--http-addr", p.HTTPAddr}, common...)
			p.env = []string{internalKey}
			if role == "auth" {
				p.env = append(p.env, envName("admin-key")+"="+st.AdminKey)
				if r.localCallbacks {
					p.args = append(p.args, "--allow-local-callbacks")
				}
			}
			if role == "room" {
				p.args = append(p.args, "--nats-url", strings.Join(natsURLs, ","), "--nats-user", clusterNATSUser)
				p.env = append(p.env, natsPassword)
			}
			if role == "media" {
				p.args = append(p.args, "--media-udp-port", strconv.Itoa(base+mediaUDPPortOffset+i), "--public-ip", "127.0.0.1")
			}
			group = append(group, p)
		}
		r.add(group...)
	}
	gw := &clusterProc{Name: "gateway", Role: "gateway", HTTPAddr: httpAddr}
	// The gateway gets no key: it calls the services as its clients do.
	gw.args = append([]string{"gateway", "--http-addr", httpAddr}, common...)
	r.add(gw)
}

func (r *clusterRunner) add(group ...*clusterProc) {
	if r.pprofBase > 0 {
		for _, p := range group {
			if p.Role != "nats" && p.Role != "gateway" {
				p.args = append(p.args, "--pprof-addr", "127.0.0.1:"+strconv.Itoa(r.pprofBase+r.profiled))
				r.profiled++
			}
		}
	}
	r.groups = append(r.groups, group)
	r.procs = append(r.procs, group...)
	for _, p := range group {
		r.nameW = max(r.nameW, len(p.Name))
	}
}

// start starts every process, waits until each serves and seeds the app.
func (r *clusterRunner) start(ctx context.Context, st *localApp) (_ *clusterSummary, err error) {
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	// A member that exits on its own fails the start at once, instead of
	// leaving the others to wait out --start-timeout for it.
	go func() {
		select {
		case <-r.members.Failed():
			fail(fmt.Errorf("%w while the cluster started; see its log above", r.members.Err()))
		case <-ctx.Done():
		}
	}()
	defer func() {
		// A process that exited is the reason, not the waits it cut short.
		if cause := context.Cause(ctx); err != nil && cause != nil && cause != ctx.Err() {
			err = cause
		}
	}()
	etcd := r.groups[0]
	for _, p := range etcd {
		if err := r.spawn(p); err != nil {
			return nil, err
		}
	}
	var endpoints []string
	for _, p := range etcd {
		endpoints = append(endpoints, "http://"+p.ClientAddr)
	}
	if err := waitEtcd(ctx, etcd); err != nil {
		return nil, err
	}
	slog.Info("etcd is up", "endpoints", strings.Join(endpoints, ","))
	for _, g := range r.groups[1:] {
		for _, p := range g {
			if err := r.spawn(p); err != nil {
				return nil, err
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(r.procs))
	for i, p := range r.procs {
		if p.Role == "etcd" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = waitProcReady(ctx, p)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	var authAddrs []string
	for _, p := range r.procs {
		if p.Role == "auth" {
			authAddrs = append(authAddrs, p.GRPCAddr)
		}
	}
	app, err := seedApp(ctx, authAddrs, st)
	if err != nil {
		return nil, fmt.Errorf("seed app: %w", err)
	}
	tok, err := token04.Mint(app.AppId, clusterTokenUser, app.ServerSecret, 24*time.Hour, nil)
	if err != nil {
		return nil, err
	}
	var natsURLs []string
	for _, p := range r.procs {
		if p.Role == "nats" {
			natsURLs = append(natsURLs, "nats://"+p.ClientAddr)
		}
	}
	return &clusterSummary{EtcdEndpoints: endpoints, NATSURLs: natsURLs, AppID: app.AppId, ServerSecret: app.ServerSecret,
		AdminKey: st.AdminKey, TokenUser: clusterTokenUser, Token: tok, Processes: r.procs}, nil
}

// spawn starts a child; its output goes to the cluster's stderr with its
// name in front of every line.
func (r *clusterRunner) spawn(p *clusterProc) error {
	cmd := exec.Command(r.exe, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	w := &prefixWriter{out: r.out, prefix: fmt.Sprintf("%-*s | ", r.nameW, p.Name)}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = childSysProcAttr()
	then := "stopping the cluster"
	if r.keepGoing {
		then = "the rest of the cluster keeps running"
	}
	proc, err := r.members.Start(p.Name, cmd, func(sp *supervise.Proc, unexpected bool) {
		w.flush()
		if unexpected {
			slog.Error("process exited unexpectedly; "+then, "name", sp.Name, "pid", sp.PID(), "status", sp.Status())
		}
	})
	if err != nil {
		return err
	}
	p.proc, p.PID = proc, proc.PID()
	slog.Info("started", "name", p.Name, "pid", p.PID)
	return nil
}

// stopAll stops the processes group by group in reverse start order:
// SIGTERM, then SIGKILL if one is not gone after stopWait. The replicas of a
// service stop together; etcd members one at a time, since members that
// stop together may lose quorum and hang in their shutdown.
func (r *clusterRunner) stopAll() {
	for i := len(r.groups) - 1; i >= 0; i-- {
		var wg sync.WaitGroup
		group := r.groups[i]
		for j := range group {
			p := group[len(group)-1-j]
			if p.proc == nil {
				continue
			}
			if p.Role == "etcd" {
				r.stop(p)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.stop(p)
			}()
		}
		wg.Wait()
	}
}

func (r *clusterRunner) stop(p *clusterProc) {
	if !p.alive() {
		return
	}
	if p.proc.Stop(r.stopWait) {
		slog.Warn("process did not stop in time; killed it", "name", p.Name, "pid", p.PID)
	}
	slog.Info("stopped", "name", p.Name, "pid", p.PID, "status", p.proc.Status())
}

// waitEtcd waits until every member answers a status request, which needs
// the members to have formed the cluster.
func waitEtcd(ctx context.Context, members []*clusterProc) error {
	var eps []string
	for _, p := range members {
		eps = append(eps, "http://"+p.ClientAddr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	for i, p := range members {
		for {
			if !p.alive() {
				return p.startFailed()
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := cli.Status(sctx, eps[i])
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s not ready: %w", p.Name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// waitProcReady waits until a service reports SERVING on the gRPC health
// service, or the gateway answers /healthz.
func waitProcReady(ctx context.Context, p *clusterProc) error {
	check := func(ctx context.Context) error {
		if p.Role == "nats" {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", p.ClientAddr)
			if err != nil {
				return err
			}
			return c.Close()
		}
		if p.Role == "gateway" {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.HTTPAddr+"/healthz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/healthz: %s", resp.Status)
			}
			return nil
		}
		return supervise.GRPCServing(ctx, p.GRPCAddr, insecure.NewCredentials())
	}
	for {
		if !p.alive() {
			return p.startFailed()
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			slog.Info("ready", "name", p.Name, "pid", p.PID)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s not ready: %w", p.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// seedApp makes sure the cluster's app exists with live streaming on, using
// the admin RPCs of any auth replica.
func seedApp(ctx context.Context, authAddrs []string, st *localApp) (*authv1.App, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, auth.AdminKeyHeader, st.AdminKey)
	var lastErr error
	for {
		for _, addr := range authAddrs {
			app, err := seedAppAt(ctx, addr, st)
			if err == nil {
				return app, nil
			}
			lastErr = fmt.Errorf("%s: %w", addr, err)
			if c := errcode.Of(err); c == errcode.InvalidParameter || c == errcode.AdminOnly {
				return nil, lastErr
			}
		}
		select {
		case <-ctx.Done():
			return nil, lastErr
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func seedAppAt(ctx context.Context, addr string, st *localApp) (*authv1.App, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	cli := authv1.NewAuthServiceClient(cc)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var app *authv1.App
	if st.AppID != 0 {
		resp, err := cli.GetApp(ctx, &authv1.GetAppRequest{AppId: st.AppID})
		switch {
		case err == nil:
			app = resp.GetApp()
			if app.GetServerSecret() != st.Secret {
				return nil, errcode.Newf(errcode.InvalidParameter, "app %d already exists with another ServerSecret", st.AppID)
			}
		case errcode.Of(err) != errcode.AppNotFound:
			return nil, err
		}
	}
	if app == nil {
		resp, err := cli.CreateApp(ctx, &authv1.CreateAppRequest{Name: "cluster", AppId: st.AppID, ServerSecret: st.Secret})
		if err != nil {
			return nil, err
		}
		app = resp.GetApp()
	}
	resp, err := cli.EnableService(ctx, &authv1.EnableServiceRequest{AppId: app.GetAppId(),
		Service: authv1.Service_SERVICE_LIVE_STREAMING, Enabled: true})
	if err != nil {
		return nil, err
	}
	return resp.GetApp(), nil
}

func printClusterBanner(w io.Writer, s *clusterSummary) {
	var b strings.Builder
	b.WriteString("\nOnAir local cluster is running.\n\n")
	fmt.Fprintf(&b, "  %-10s %-8s %-8s %s\n", "NAME", "ROLE", "PID", "ADDRESSES")
	for _, p := range s.Processes {
		var addrs []string
		switch {
		case p.Role == "nats":
			addrs = append(addrs, "client nats://"+p.ClientAddr, "routes nats-route://"+p.PeerAddr)
		case p.ClientAddr != "":
			addrs = append(addrs, "client http://"+p.ClientAddr, "peer http://"+p.PeerAddr)
		}
		if p.GRPCAddr != "" {
			addrs = append(addrs, "grpc "+p.GRPCAddr)
		}
		if p.HTTPAddr != "" {
			addrs = append(addrs, "http http://"+p.HTTPAddr)
		}
		fmt.Fprintf(&b, "  %-10s %-8s %-8d %s\n", p.Name, p.Role, p.PID, strings.Join(addrs, "  "))
	}
	var rooms []string
	for _, p := range s.Processes {
		if p.Role == "room" {
			rooms = append(rooms, p.GRPCAddr)
		}
	}
	fmt.Fprintf(&b, `
  etcd         %s
  NATS         %s
  REST         %s   (OpenAPI: /openapi.json)
  SDK server   %s   (EngineProfile.Server)
  AppID        %d
  ServerSecret %s
  Admin key    %s
  Token        %s
               (user %q, 24h; mint others with: onair token --app-id %d --app-secret %s --user-id <id>)
  Data         %s

`, strings.Join(s.EtcdEndpoints, ","), strings.Join(s.NATSURLs, ","), s.Gateway, strings.Join(rooms, ","), s.AppID, s.ServerSecret, s.AdminKey,
		s.Token, s.TokenUser, s.AppID, s.ServerSecret, s.DataDir)
	io.WriteString(w, b.String())
}

// lockedWriter serializes whole-line writes from several sources.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter puts a prefix before every line and writes whole lines only.
type prefixWriter struct {
	out    io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *prefixWriter) emit(line []byte) {
	_, _ = w.out.Write(append([]byte(w.prefix), line...))
}

// flush writes a last line that had no newline.
func (w *prefixWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = nil
	}
}
