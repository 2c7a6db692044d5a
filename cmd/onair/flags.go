package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// envName is the environment variable that backs a flag: --grpc-addr is
// ONAIR_GRPC_ADDR.
func envName(flagName string) string {
	return "ONAIR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, so a container can be configured either way.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// parse parses args and then the environment fallbacks.
func parse(fs *flag.FlagSet, args []string) error {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: onair %s [flags]\n\nEvery flag can also be set by its ONAIR_* environment variable (--grpc-addr: ONAIR_GRPC_ADDR).\n\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return applyEnv(fs)
}

// serviceFlags are the flags every long-running role has.
type serviceFlags struct {
	grpcAddr      string
	httpAddr      string
	advertiseAddr string
	etcdEndpoints string
	internalKey   string
	leaseTTL      time.Duration
	drain         time.Duration
	logLevel      string
}

func (c *serviceFlags) register(fs *flag.FlagSet, defaultHTTP string) {
	fs.StringVar(&c.grpcAddr, "grpc-addr", "127.0.0.1:9090", "address the gRPC server listens on")
	fs.StringVar(&c.httpAddr, "http-addr", defaultHTTP, "address of the HTTP server (REST, WHIP/WHEP, /metrics, /healthz); empty disables it")
	fs.StringVar(&c.advertiseAddr, "advertise-addr", "", "gRPC address other services dial, registered in etcd (default: the listen address)")
	fs.StringVar(&c.etcdEndpoints, "etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	fs.StringVar(&c.internalKey, "internal-key", "", "shared key that marks calls between OnAir services (required in a cluster)")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", 5*time.Second, "TTL of this instance's etcd lease: a dead instance leaves rotation after it")
	fs.DurationVar(&c.drain, "drain-timeout", 10*time.Second, "how long in-flight calls get to finish on SIGTERM")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
}
