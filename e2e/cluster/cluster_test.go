//go:build unix

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/internal/testproc"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

// portSpan is how many consecutive ports `onair cluster` takes from
// --base-port (kept in step with cmd/onair/cluster.go).
const portSpan = 36

// summary is the JSON `onair cluster` prints after "CLUSTER ".
type summary struct {
	EtcdEndpoints []string `json:"etcd_endpoints"`
	NATSURLs      []string `json:"nats_urls"`
	Gateway       string   `json:"gateway"`
	AppID         uint32   `json:"app_id"`
	ServerSecret  string   `json:"server_secret"`
	Token         string   `json:"token"`
	Processes     []struct {
		Name       string `json:"name"`
		Role       string `json:"role"`
		PID        int    `json:"pid"`
		GRPCAddr   string `json:"grpc_addr"`
		HTTPAddr   string `json:"http_addr"`
		ClientAddr string `json:"client_addr"`
	} `json:"processes"`
}

func (s *summary) proc(t *testing.T, name string) (pid int, grpcAddr string) {
	t.Helper()
	for _, p := range s.Processes {
		if p.Name == name {
			return p.PID, p.GRPCAddr
		}
	}
	t.Fatalf("no process %q in the cluster summary", name)
	return 0, ""
}

// freeBase finds n consecutive free loopback ports below the usual
// ephemeral range, so outgoing connections do not take them meanwhile.
func freeBase(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(12000-n)
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no block of free ports")
	return 0
}

// startCluster runs `onair cluster` in its own process group, waits for its
// summary line and makes sure every process is gone when the test ends.
// Its ports are picked free by the test (freeBase, FreeAddr) and may be
// taken before the cluster's processes listen on them; the cluster then
// stops and exits with "address already in use" in its log, and is started
// again on new ones. extra are more flags for `onair cluster`.
func startCluster(t *testing.T, extra ...string) (*testproc.Proc, *summary) {
	t.Helper()
	bin := testproc.BuildOnair(t)
	var (
		p      *testproc.Proc
		stdout *testproc.Log
		sum    summary
	)
	start := func() []*testproc.Proc {
		cmd := exec.Command(bin, "cluster", "--data-dir", t.TempDir(), "--base-port", strconv.Itoa(freeBase(t, portSpan)),
			"--http-addr", testproc.FreeAddr(t), "--lease-ttl", "2s", "--drain-timeout", "2s", "--start-timeout", "90s")
		cmd.Args = append(cmd.Args, extra...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "ONAIR_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		// The summary line goes apart from the log, so no log line can
		// come in the middle of it.
		stdout = &testproc.Log{}
		cmd.Stdout = stdout
		proc := testproc.Start(t, cmd)
		p = proc
		t.Cleanup(func() {
			// Before Start's cleanup, whatever happened: the cluster's
			// group, then every child (they have groups of their own and
			// die with the cluster anyway).
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			for _, c := range sum.Processes {
				_ = syscall.Kill(-c.PID, syscall.SIGKILL)
			}
			<-proc.Exited()
			if !t.Failed() && os.Getenv("CLUSTER_LOG") != "" {
				t.Logf("onair cluster output:\n%s", proc.Log)
			}
		})
		return []*testproc.Proc{proc}
	}
	testproc.StartOnFreeAddrs(t, start, func() bool {
		for l := range strings.Lines(stdout.String()) {
			if js, ok := strings.CutPrefix(l, "CLUSTER "); ok && strings.HasSuffix(js, "\n") {
				if err := json.Unmarshal([]byte(js), &sum); err != nil {
					t.Fatalf("summary %q: %v", js, err)
				}
				return true
			}
		}
		return false
	})
	return p, &sum
}

// recorder writes down the callbacks a test looks at.
type recorder struct {
	express.BaseEventHandler
	mu     sync.Mutex
	states []express.RoomStateChangedReason
	users  map[string]bool // user -> present (Add) or gone (Delete)
	left   []string        // every user a Delete named, in order
}

func newRecorder() *recorder { return &recorder{users: map[string]bool{}} }

func (r *recorder) OnRoomStateChanged(reason express.RoomStateChangedReason, _ int, _, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, reason)
}

func (r *recorder) OnRoomUserUpdate(t express.UpdateType, users []express.User, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range users {
		r.users[u.UserID] = t == express.UpdateTypeAdd
		if t != express.UpdateTypeAdd {
			r.left = append(r.left, u.UserID)
		}
	}
}

func (r *recorder) present(user string) func() bool {
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.users[user]
	}
}

func (r *recorder) gone(user string) func() bool {
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		v, ok := r.users[user]
		return ok && !v
	}
}

// reconnected reports Reconnecting followed later by Reconnected.
func (r *recorder) reconnected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.Index(r.states, express.RoomStateChangedReasonReconnecting)
	return i >= 0 && slices.Contains(r.states[i:], express.RoomStateChangedReasonReconnected)
}

type client struct {
	user string
	e    *express.Engine
	rec  *recorder
}

// login logs a user in with the given server list, retrying while the
// cluster settles (e.g. an etcd election after a member died).
func login(t *testing.T, s *summary, servers []string, room, user string) *client {
	t.Helper()
	rec := newRecorder()
	return &client{user: user, e: loginWith(t, s, servers, room, user, rec), rec: rec}
}

// loginWith is login with the engine's event handler h.
func loginWith(t *testing.T, s *summary, servers []string, room, user string, h express.EventHandler) *express.Engine {
	t.Helper()
	e, err := express.CreateEngine(express.EngineProfile{AppID: s.AppID, Server: strings.Join(servers, ","),
		ReconnectTimeout: time.Minute}, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.DestroyEngine(nil) })
	tok, err := token04.Mint(s.AppID, user, s.ServerSecret, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, user+" to log in", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := e.LoginRoom(ctx, room, express.User{UserID: user, UserName: user},
			express.RoomConfig{IsUserStatusNotify: true, Token: tok})
		if err != nil {
			t.Logf("login %s: %v (retrying)", user, err)
			time.Sleep(500 * time.Millisecond)
		}
		return err == nil
	})
	return e
}

// The local cluster as real processes: clients on different room replicas
// see each other, and keep doing so after a room replica and an etcd member
// are killed with SIGKILL; then the cluster stops cleanly on SIGTERM.
func TestLocalClusterSurvivesKilledRoomReplicaAndEtcdMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process cluster")
	}
	// --keep-going: this drill kills members and wants the rest to run on.
	cluster, s := startCluster(t, "--keep-going")
	roomAPID, roomA := s.proc(t, "room-1")
	_, roomB := s.proc(t, "room-2")
	etcdPID, _ := s.proc(t, "etcd-1")
	const room = "cluster-room"

	alice := login(t, s, []string{roomA, roomB}, room, "alice")
	bob := login(t, s, []string{roomB, roomA}, room, "bob")
	testkit.Eventually(t, "alice to see bob", alice.rec.present("bob"))
	testkit.Eventually(t, "bob to see alice", bob.rec.present("alice"))

	// Alice's room replica and an etcd member die hard.
	for _, pid := range []int{roomAPID, etcdPID} {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
	testkit.Eventually(t, "the cluster to notice room-1 died", func() bool {
		return strings.Contains(cluster.Log.String(), fmt.Sprintf("name=room-1 pid=%d status=\"signal: killed\"", roomAPID))
	})

	carol := login(t, s, []string{roomB, roomA}, room, "carol")
	testkit.Eventually(t, "alice to see carol", alice.rec.present("carol"))
	testkit.Eventually(t, "bob to see carol", bob.rec.present("carol"))
	// Carol's first snapshot must hold bob before he leaves, or she is
	// rightly never told about him at all.
	testkit.Eventually(t, "carol to see bob", carol.rec.present("bob"))
	testkit.Eventually(t, "alice to reconnect (Reconnecting, then Reconnected)", alice.rec.reconnected)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bob.e.LogoutRoom(ctx, room); err != nil {
		t.Fatalf("bob logout: %v", err)
	}
	testkit.Eventually(t, "alice to see bob leave", alice.rec.gone("bob"))
	testkit.Eventually(t, "carol to see bob leave", carol.rec.gone("bob"))

	// Clean stop: the clients leave, SIGTERM, every process exits.
	for _, c := range []*client{alice, bob, carol} {
		c.e.DestroyEngine(nil)
	}
	if err := cluster.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cluster.Exited():
	case <-time.After(time.Minute):
		t.Fatal("onair cluster did not exit within a minute of SIGTERM")
	}
	if !cluster.Cmd.ProcessState.Success() {
		t.Errorf("onair cluster exited with %v", cluster.Cmd.ProcessState)
	}
	for _, p := range s.Processes {
		testkit.Eventually(t, p.Name+" to be gone", func() bool { return processGone(p.PID) })
	}
	if !strings.Contains(cluster.Log.String(), `msg="cluster stopped"`) {
		t.Error(`no "cluster stopped" in the cluster's log`)
	}
}

// processGone reports whether pid no longer exists (or is a zombie nobody
// waited for yet, which kill(0) can't tell; the cluster reaps its children).
func processGone(pid int) bool {
	err := syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}

// A member of the cluster that dies after the start stops the cluster:
// `onair cluster` exits non-zero, naming the member and how it ended, and
// takes the other processes with it, instead of running on without it.
func TestLocalClusterStopsWhenAMemberDies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process cluster")
	}
	cluster, s := startCluster(t)
	natsPID, _ := s.proc(t, "nats-2")
	if err := syscall.Kill(natsPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cluster.Exited():
	case <-time.After(2 * time.Minute): // a bound for correctness, not a performance check
		t.Fatal("onair cluster runs on after nats-2 died")
	}
	if cluster.Cmd.ProcessState.Success() {
		t.Fatalf("onair cluster exited with %v after nats-2 died", cluster.Cmd.ProcessState)
	}
	if want := "nats-2 exited unexpectedly (signal: killed)"; !strings.Contains(cluster.Log.String(), want) {
		t.Errorf("no %q in the cluster's output", want)
	}
	for _, p := range s.Processes {
		testkit.Eventually(t, p.Name+" to be gone", func() bool { return processGone(p.PID) })
	}
}
