package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/onair-dev/onair/internal/embedetcd"
)

// runEtcd runs one member of an etcd cluster in this process until SIGTERM
// or SIGINT, so a cluster needs nothing but the onair binary.
func runEtcd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	name := fs.String("name", "default", "member name (must appear in --initial-cluster)")
	dataDir := fs.String("data-dir", "", "where the member keeps its data (required)")
	clientAddr := fs.String("client-addr", "127.0.0.1:2379", "host:port clients connect to")
	peerAddr := fs.String("peer-addr", "127.0.0.1:2380", "host:port other members connect to")
	initial := fs.String("initial-cluster", "", `every member as "name=http://host:peerport,..."; empty for a single member`)
	retention := fs.String("auto-compaction-retention", "1h", "revision history kept by periodic auto compaction; empty disables it")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	pprofAddr := fs.String("pprof-addr", "", "loopback host:port that serves /debug/pprof/ (profiling; empty: off)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := setupLogging(*logLevel); err != nil {
		return err
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			return err
		}
	}
	if *dataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	slog.Info("etcd member starting", "name", *name, "client", *clientAddr, "peer", *peerAddr, "initial_cluster", *initial)
	e, err := embedetcd.Start(ctx, embedetcd.Config{Name: *name, Dir: *dataDir, ClientAddr: *clientAddr,
		PeerAddr: *peerAddr, InitialCluster: *initial, AutoCompactionRetention: *retention})
	if err != nil {
		return err
	}
	defer e.Close()
	slog.Info("serving", "role", "etcd", "name", *name, "client", e.Endpoints())
	select {
	case <-ctx.Done():
		slog.Info("shutting down", "role", "etcd", "name", *name)
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd member %s: %w", *name, err)
	}
}
