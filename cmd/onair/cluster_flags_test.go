package main

import (
	"strings"
	"testing"
)

// The cluster's flags are checked against its port plan before anything
// starts: a gateway address on one of the cluster's own ports is refused,
// naming the process that would lose it.
func TestCheckClusterFlags(t *testing.T) {
	const base = 23790 // ports 23790-23825
	for _, tc := range []struct {
		name     string
		base     int
		httpAddr string
		wantErr  string // "" when the flags are accepted
	}{
		{"defaults", base, "127.0.0.1:8080", ""},
		{"just below the range", base, "127.0.0.1:23789", ""},
		{"just above the range", base, "127.0.0.1:23826", ""},
		{"another host's port in the range", base, "192.0.2.7:23820", ""},
		{"a NATS client port", base, "127.0.0.1:23820", "nats-1 takes clients"},
		{"all addresses take the loopback port too", base, "0.0.0.0:23820", "nats-1 takes clients"},
		{"no host is every address", base, ":23800", "auth-1 serves gRPC"},
		{"localhost", base, "localhost:23790", "etcd-1 takes clients"},
		{"IPv6 loopback", base, "[::1]:23801", "auth-2 serves gRPC"},
		{"a media UDP port", base, "127.0.0.1:23818", "media-1 takes media (UDP)"},
		{"a port the plan keeps free", base, "127.0.0.1:23796", "kept free for it"},
		{"first port of the range", base, "127.0.0.1:23790", "inside the cluster's ports 127.0.0.1:23790-23825 (--base-port 23790)"},
		{"no port", base, "127.0.0.1", "--http-addr \"127.0.0.1\""},
		{"port zero", base, "127.0.0.1:0", "needs a fixed port"},
		{"base port zero", 0, "127.0.0.1:8080", "--base-port 0 out of range"},
		{"range up to 65535", 65500, "127.0.0.1:8080", ""},
		{"range past 65535", 65501, "127.0.0.1:8080", "--base-port 65501 out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkClusterFlags(tc.base, tc.httpAddr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want %q in it", err, tc.wantErr)
			}
		})
	}
}

// `onair cluster` refuses a gateway address inside its port range with a
// clear error, before it starts (or writes) anything.
func TestClusterRefusesGatewayInsideItsPorts(t *testing.T) {
	dir := t.TempDir() + "/cluster"
	out, err := runAsOnair(t, []string{"cluster", "--base-port", "23790", "--http-addr", "127.0.0.1:23825", "--data-dir", dir}, nil)
	if err == nil || !strings.Contains(out, "--http-addr 127.0.0.1:23825 is inside the cluster's ports") || !strings.Contains(out, "nats-3 takes its peers") {
		t.Fatalf("onair cluster with its gateway on nats-3's port: %v\n%s", err, out)
	}
	if strings.Contains(out, "started") {
		t.Fatalf("processes were started:\n%s", out)
	}
}
