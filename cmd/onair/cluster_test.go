package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every process of the local cluster gets its own ports inside the block
// --base-port promises, and the flags tie them into one cluster.
func TestClusterPlan(t *testing.T) {
	const base = 30000
	st := &localApp{AppID: 1, Secret: strings.Repeat("s", 32), AdminKey: "admin-key-value", InternalKey: "internal-key-value"}
	r := &clusterRunner{}
	r.plan(base, "127.0.0.1:8080", "/data", st, "info", 5*time.Second, 5*time.Second)

	roles := map[string]int{}
	seen := map[string]string{}
	use := func(p *clusterProc, addr string) {
		t.Helper()
		if addr == "" {
			return
		}
		if other, dup := seen[addr]; dup {
			t.Errorf("%s and %s both use %s", p.Name, other, addr)
		}
		seen[addr] = p.Name
		if p.Role == "gateway" {
			return
		}
		port, _ := strconv.Atoi(strings.TrimPrefix(addr, "127.0.0.1:"))
		if port < base || port >= base+clusterPortSpan {
			t.Errorf("%s uses %s outside %d-%d", p.Name, addr, base, base+clusterPortSpan-1)
		}
	}
	for _, p := range r.procs {
		roles[p.Role]++
		use(p, p.GRPCAddr)
		use(p, p.HTTPAddr)
		use(p, p.ClientAddr)
		use(p, p.PeerAddr)
		args := strings.Join(p.args, " ")
		if p.args[0] != p.Role {
			t.Errorf("%s runs %q", p.Name, p.args[0])
		}
		// Keys never go on a command line, which anyone on the machine
		// can read (ps, /proc/<pid>/cmdline); they go in the environment.
		for what, secret := range map[string]string{"internal key": st.InternalKey, "admin key": st.AdminKey, "ServerSecret": st.Secret} {
			for _, a := range p.args {
				if strings.Contains(a, secret) {
					t.Errorf("%s: the %s is on its command line: %q", p.Name, what, a)
				}
			}
		}
		for _, a := range p.args {
			if a == "--internal-key" || a == "--admin-key" || a == "--app-secret" || strings.HasPrefix(a, "--internal-key=") ||
				strings.HasPrefix(a, "--admin-key=") || strings.HasPrefix(a, "--app-secret=") {
				t.Errorf("%s: key flag %q on its command line", p.Name, a)
			}
		}
		env := map[string]string{}
		for _, e := range p.env {
			k, v, _ := strings.Cut(e, "=")
			env[k] = v
		}
		if strings.Contains(strings.Join(p.env, "\n"), st.Secret) {
			t.Errorf("%s: the ServerSecret is in its environment", p.Name)
		}
		switch p.Role {
		case "etcd":
			if !strings.Contains(args, "--initial-cluster n1=http://127.0.0.1:30001,n2=http://127.0.0.1:30003,n3=http://127.0.0.1:30005") {
				t.Errorf("%s: %s", p.Name, args)
			}
		case "nats":
			// No etcd: NATS stands on its own.
		default:
			if !strings.Contains(args, "--etcd-endpoints http://127.0.0.1:30000,http://127.0.0.1:30002,http://127.0.0.1:30004") {
				t.Errorf("%s: %s", p.Name, args)
			}
		}
		wantInternal := p.Role != "etcd" && p.Role != "nats" && p.Role != "gateway"
		if got := env["ONAIR_INTERNAL_KEY"]; (got == st.InternalKey) != wantInternal || (!wantInternal && got != "") {
			t.Errorf("%s: ONAIR_INTERNAL_KEY=%q in its environment (want it: %v)", p.Name, got, wantInternal)
		}
		if got := env["ONAIR_ADMIN_KEY"]; (p.Role == "auth") != (got == st.AdminKey) || (p.Role != "auth" && got != "") {
			t.Errorf("%s: ONAIR_ADMIN_KEY=%q in its environment", p.Name, got)
		}
		if p.Role == "media" {
			use(p, "127.0.0.1:"+argAfter(p.args, "--media-udp-port"))
		}
		// NATS: a cluster of three routed to each other, which the room
		// replicas reach with a password from their environment.
		wantNATSPassword := p.Role == "nats" || p.Role == "room"
		if got := env["ONAIR_NATS_PASSWORD"]; (got == st.InternalKey) != wantNATSPassword || (!wantNATSPassword && got != "") {
			t.Errorf("%s: ONAIR_NATS_PASSWORD=%q in its environment (want it: %v)", p.Name, got, wantNATSPassword)
		}
		switch p.Role {
		case "nats":
			if routes := strings.Split(argAfter(p.args, "--routes"), ","); len(routes) != 2 || slices.Contains(routes, "nats-route://"+p.PeerAddr) {
				t.Errorf("%s: routes %v, want the two other servers", p.Name, routes)
			}
		case "room":
			if got := argAfter(p.args, "--nats-url"); got != "nats://127.0.0.1:30030,nats://127.0.0.1:30032,nats://127.0.0.1:30034" {
				t.Errorf("%s: --nats-url %q", p.Name, got)
			}
		}
	}
	want := map[string]int{"etcd": 3, "nats": 3, "auth": 2, "stream": 2, "room": 2, "media": 2, "gateway": 1}
	for role, n := range want {
		if roles[role] != n {
			t.Errorf("%d %s processes, want %d", roles[role], role, n)
		}
	}
	if len(r.groups) != 7 || r.groups[0][0].Role != "etcd" || r.groups[1][0].Role != "nats" || r.groups[6][0].Role != "gateway" {
		t.Errorf("start groups are out of order")
	}

}

// Every planned command line is one the onair binary accepts: each process
// is this test binary run as onair (TestMain), with its planned arguments
// and -h, which parses them all and then stops before starting anything.
// A flag the role does not define fails here as it would in the cluster.
func TestClusterPlanParsesWithTheRealFlags(t *testing.T) {
	st := &localApp{AppID: 1, Secret: strings.Repeat("s", 32), AdminKey: "admin-key-value", InternalKey: "internal-key-value"}
	r := &clusterRunner{}
	r.plan(30000, "127.0.0.1:8080", t.TempDir(), st, "info", 5*time.Second, 5*time.Second)
	for _, p := range r.procs {
		out, err := runAsOnair(t, append(p.args, "-h"), p.env)
		if err != nil || strings.Contains(out, "flag provided but not defined") {
			t.Errorf("onair %s: %v\n%s", strings.Join(p.args, " "), err, out)
		}
	}
	// And the check can fail: a misspelt flag is refused.
	if out, err := runAsOnair(t, []string{"media", "--udp-port", "1", "-h"}, nil); err == nil {
		t.Errorf("onair media --udp-port was accepted:\n%s", out)
	}
}

// runAsOnair runs this test binary as the onair command with args.
func runAsOnair(t *testing.T, args, env []string) (string, error) {
	t.Helper()
	// A command that should have stopped at once but runs on is ended
	// rather than left to hang the test.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append([]string{runAsOnairEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runAsOnairEnv makes the test binary run main, as the onair command.
const runAsOnairEnv = "ONAIR_TEST_RUN_AS_ONAIR"

func TestMain(m *testing.M) {
	if os.Getenv(runAsOnairEnv) == "1" {
		os.Args = append([]string{"onair"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{out: &lockedWriter{w: &out}, prefix: "room-1 | "}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\nthr"))
	if got := out.String(); got != "room-1 | one\nroom-1 | two\n" {
		t.Fatalf("got %q", got)
	}
	w.flush()
	if got := out.String(); got != "room-1 | one\nroom-1 | two\nroom-1 | thr\n" {
		t.Fatalf("after flush %q", got)
	}
}

// A role started without the internal key refuses to start, naming the
// flag, rather than failing on its first call to another service.
func TestRoleNeedsInternalKey(t *testing.T) {
	out, err := runAsOnair(t, []string{"room", "--etcd-endpoints", "http://127.0.0.1:1", "--grpc-addr", "127.0.0.1:0"}, nil)
	if err == nil || !strings.Contains(out, "--internal-key") {
		t.Fatalf("onair room without --internal-key: %v\n%s", err, out)
	}
}
