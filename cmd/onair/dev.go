package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/embednats"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/telemetry"
	"github.com/onair-dev/onair/token04"
)

// runDev runs every role, the gateway and an embedded etcd in one process.
func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var sf serviceFlags
	var rf roleFlags
	sf.register(fs, "127.0.0.1:8080")
	rf.register(fs)
	dataDir := fs.String("data-dir", filepath.Join(".onair", "dev"), "where the embedded etcd keeps its data")
	appID := fs.Uint("app-id", 0, "AppID to seed (default: a generated one, kept in the data dir)")
	appSecret := fs.String("app-secret", "", "ServerSecret to seed with --app-id (32 characters; default generated)")
	natsAddr := fs.String("nats-addr", "", "host:port where the embedded NATS also takes connections (default: none, in-process only); ignored with --nats-url")
	etcdAddr := fs.String("etcd-addr", "", "host:port where the embedded etcd takes clients (default: a free loopback port), so that a separate `onair media` can join")
	roles := fs.String("roles", "auth,stream,room,media", "roles this process runs (leave out media to measure a separate `onair media` edge)")
	var nf natsFlags
	nf.register(fs, "")
	pprofAddr := fs.String("pprof-addr", "", "loopback host:port that serves /debug/pprof/ (profiling; empty: off)")
	rf.debugTokens = true
	// Apps may take callbacks on this machine (callback_allow_local).
	rf.devMode = true
	rf.publicIP = "127.0.0.1"
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := setupLogging(sf.logLevel); err != nil {
		return err
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	app, err := loadLocalApp(*dataDir, "dev-app.json", uint32(*appID), *appSecret, rf.adminKey)
	if err != nil {
		return err
	}
	rf.adminKey = app.AdminKey
	if sf.internalKey == "" {
		sf.internalKey = app.InternalKey
	}

	etcd, err := embedetcd.Start(ctx, embedetcd.Config{Name: "dev", Dir: filepath.Join(*dataDir, "etcd"), ClientAddr: *etcdAddr, AutoCompactionRetention: "1h"})
	if err != nil {
		return err
	}
	defer etcd.Close()
	cli, err := etcd.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	tel, err := telemetry.Setup(ctx, "onair-dev")
	if err != nil {
		return err
	}
	defer shutdownTelemetry(tel)

	// Room messages: through a NATS server inside this process, or the one
	// --nats-url names.
	var natsOpts []nats.Option
	if nf.url == "" {
		ns, err := embednats.Start(embednats.Config{Name: "dev", ClientAddr: *natsAddr, Logger: slog.Default()})
		if err != nil {
			return err
		}
		defer ns.Close()
		natsOpts = append(natsOpts, ns.InProcess())
		if *natsAddr != "" {
			slog.Info("embedded NATS listens", "url", ns.URL())
		}
	}
	nc, err := nf.connect("onair-dev", natsOpts...)
	if err != nil {
		return err
	}
	defer nc.Close()

	var roleList []string
	for _, r := range strings.Split(*roles, ",") {
		switch r = strings.TrimSpace(r); r {
		case discovery.Auth, discovery.Stream, discovery.Room, discovery.Media:
			roleList = append(roleList, r)
		case "":
		default:
			return fmt.Errorf("--roles: unknown role %q", r)
		}
	}
	if !slices.Contains(roleList, discovery.Auth) {
		return errors.New("--roles must include auth: onair dev seeds its app there")
	}
	slog.Info("embedded etcd", "endpoints", strings.Join(etcd.Endpoints(), ","), "internal_key_file", filepath.Join(*dataDir, "dev-app.json"))
	cfg := node.Config{Roles: roleList, Etcd: cli,
		GRPCAddr: sf.grpcAddr, AdvertiseAddr: sf.advertiseAddr, InternalKey: sf.internalKey, LeaseTTL: sf.leaseTTL, Telemetry: tel}
	rf.nodeConfig(&cfg)
	cfg.Room.NATS = nc
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if _, err := n.AuthServer.EnsureApp(ctx, app.AppID, app.Secret); err != nil {
		return err
	}
	// The console at / offers the dev app and mints its tokens (loopback
	// only; see gateway.ServeDevConsole): only `onair dev` mounts this.
	devConsole := func(gw *gateway.Gateway) { gw.ServeDevConsole(gateway.DevApp{AppID: app.AppID, Secret: app.Secret}) }
	web, closeGateway, err := startGateway(ctx, cli, tel, sf.httpAddr, n.Ready, devConsole)
	if err != nil {
		return err
	}
	defer closeGateway()
	tok, err := token04.Mint(app.AppID, "dev-user", app.Secret, 24*time.Hour, nil)
	if err != nil {
		return err
	}
	printDevBanner(os.Stdout, n.Addr(), sf.httpAddr, app, tok)
	slog.Info("onair dev is up", "grpc", n.Addr(), "http", sf.httpAddr, "data_dir", *dataDir)
	return waitAndStop(ctx, n, web, sf.drain)
}

func printDevBanner(w io.Writer, grpcAddr, httpAddr string, app *localApp, tok string) {
	fmt.Fprintf(w, `
OnAir dev is running.

  gRPC         %s
  Console      http://%s/   (join a room from the browser; SDK: /sdk/onair-express.js)
  HTTP (REST)  http://%s   (OpenAPI: /openapi.json, metrics: /metrics)
  AppID        %d
  ServerSecret %s
  Admin key    %s
  Token        %s
               (user "dev-user", 24h; mint others with: onair token --app-id %d --app-secret %s --user-id <id>)

`, grpcAddr, httpAddr, httpAddr, app.AppID, app.Secret, app.AdminKey, tok, app.AppID, app.Secret)
}
