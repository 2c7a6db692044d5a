package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// checkClusterFlags checks the addresses given to `onair cluster` against
// its port plan before anything starts: the cluster's processes listen on
// 127.0.0.1 ports base to base+clusterPortSpan-1, so a gateway address on one
// of them would cost a member its port (and that member would die after
// the others had started).
func checkClusterFlags(base int, httpAddr string) error {
	if base <= 0 || base+clusterPortSpan-1 > 65535 {
		return fmt.Errorf("--base-port %d out of range: the cluster needs %d ports from it, up to 65535", base, clusterPortSpan)
	}
	host, portText, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %q: %w", httpAddr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("--http-addr %q needs a fixed port (1-65535): the cluster tells its clients where the gateway is", httpAddr)
	}
	if !sharesLoopback(host) || port < base || port >= base+clusterPortSpan {
		return nil
	}
	use := "kept free for it"
	if owner, ok := planPorts(base)[port]; ok {
		use = "where " + owner
	}
	return fmt.Errorf("--http-addr %s is inside the cluster's ports 127.0.0.1:%d-%d (--base-port %d), %s: pick an --http-addr outside them or another --base-port",
		httpAddr, base, base+clusterPortSpan-1, base, use)
}

// sharesLoopback reports whether listening on host takes the same port on
// 127.0.0.1: the loopback itself, or every address.
func sharesLoopback(host string) bool {
	if host == "" || host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// planPorts says what the cluster's plan does with each of its ports, as
// "auth-1 serves gRPC", from the plan itself so the two cannot drift apart.
func planPorts(base int) map[int]string {
	r := &clusterRunner{}
	r.plan(base, "", "", &localApp{}, "info", 0, 0)
	out := map[int]string{}
	note := func(addr, what string) {
		if _, p, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				out[n] = what
			}
		}
	}
	for _, p := range r.procs {
		if p.Role == "gateway" {
			continue
		}
		note(p.GRPCAddr, p.Name+" serves gRPC")
		note(p.HTTPAddr, p.Name+" serves /metrics and /healthz")
		note(p.ClientAddr, p.Name+" takes clients")
		note(p.PeerAddr, p.Name+" takes its peers")
		if p.Role == "media" {
			note("127.0.0.1:"+argAfter(p.args, "--media-udp-port"), p.Name+" takes media (UDP)")
		}
	}
	return out
}

// checkPortsFree fails early, with a useful message, if a port of the
// layout is taken.
func checkPortsFree(base int, httpAddr string) error {
	addrs := []string{httpAddr}
	for i := range clusterPortSpan {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(base+i))
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("%s is not free (the cluster uses 127.0.0.1 ports %d-%d and %s; pick others with --base-port and --http-addr): %w",
				a, base, base+clusterPortSpan-1, httpAddr, err)
		}
		l.Close()
	}
	return nil
}

// argAfter is the value that follows flag in args ("" if none).
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
