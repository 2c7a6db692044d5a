//go:build unix

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

// restLogin logs user into room through the gateway, as a browser or a
// curl user would, and says how it went and how long it took.
func restLogin(t *testing.T, s *summary, room, user string) (status int, code int64, body string, took time.Duration) {
	t.Helper()
	tok, err := token04.Mint(s.AppID, user, s.ServerSecret, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"app_id": s.AppID, "user": map[string]string{"user_id": user, "user_name": user},
		"token": tok, "config": map[string]any{"is_user_status_notify": true}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	hreq, _ := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(s.Gateway, "/")+"/v1/rooms/"+room+":login", bytes.NewReader(req))
	start := time.Now()
	resp, err := http.DefaultClient.Do(hreq)
	took = time.Since(start)
	if err != nil {
		return 0, 0, err.Error(), took
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Code int64 `json:"code"`
	}
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Code, string(b), took
}

// ready asks a role process's readiness endpoint.
func ready(httpAddr string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// serviceProcs are the cluster's service replicas (they register in etcd).
func serviceProcs(s *summary) []summaryProc {
	var out []summaryProc
	for _, p := range s.Processes {
		if slices.Contains([]string{"auth", "room", "stream", "media"}, p.Role) {
			out = append(out, summaryProc{p.Name, p.Role, p.PID, p.GRPCAddr, p.HTTPAddr})
		}
	}
	return out
}

type summaryProc struct {
	Name, Role         string
	PID                int
	GRPCAddr, HTTPAddr string
}

// registered lists "role/addr" for every instance registered in etcd.
func registered(t *testing.T, s *summary) []string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/onair/services/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), "/onair/services/"))
	}
	sort.Strings(out)
	return out
}

func wantRegistered(s *summary) []string {
	var out []string
	for _, p := range serviceProcs(s) {
		out = append(out, p.Role+"/"+p.GRPCAddr)
	}
	sort.Strings(out)
	return out
}

// everLeft reports whether r was ever told that user left.
func (r *recorder) everLeft(user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.left, user)
}

func (r *recorder) failedStates() []express.RoomStateChangedReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bad []express.RoomStateChangedReason
	for _, st := range r.states {
		if st == express.RoomStateChangedReasonReconnectFailed || st == express.RoomStateChangedReasonKickOut ||
			st == express.RoomStateChangedReasonLogout {
			bad = append(bad, st)
		}
	}
	return bad
}

// Two of three etcd members stopped (SIGSTOP) for 20 s, then resumed:
// meanwhile REST logins fail at once with 503 and the vendor's server
// error, instances report not ready; afterwards every instance is
// registered again and logins work within seconds, with no process
// restarted, and the users who were in a room never see each other leave.
func TestLocalClusterHealsAfterEtcdLosesQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process cluster")
	}
	cluster, s := startCluster(t)
	logs := cluster.Log
	_, roomA := s.proc(t, "room-1")
	_, roomB := s.proc(t, "room-2")
	const room = "outage-room"
	alice := login(t, s, []string{roomA, roomB}, room, "alice")
	bob := login(t, s, []string{roomB, roomA}, room, "bob")
	testkit.Eventually(t, "alice to see bob", alice.rec.present("bob"))
	testkit.Eventually(t, "bob to see alice", bob.rec.present("alice"))
	if st, _, body, _ := restLogin(t, s, room, "rest-before"); st != http.StatusOK {
		t.Fatalf("REST login before the outage: %d %s", st, body)
	}
	want := wantRegistered(s)
	if got := registered(t, s); !slices.Equal(got, want) {
		t.Fatalf("registered before the outage: %v, want %v", got, want)
	}

	stopped := []string{"etcd-2", "etcd-3"}
	var pids []int
	for _, name := range stopped {
		pid, _ := s.proc(t, name)
		pids = append(pids, pid)
	}
	resume := func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	outageStart := time.Now()
	logsBefore := len(logs.String())

	// While etcd has no quorum: logins fail fast, in our words, and every
	// service instance (lease TTL 2 s) reports not ready.
	var tooks []time.Duration
	notReady := map[string]bool{}
	for i := 0; time.Since(outageStart) < 18*time.Second; i++ {
		st, code, body, took := restLogin(t, s, room, fmt.Sprintf("rest-during-%d", i))
		tooks = append(tooks, took)
		if st != http.StatusServiceUnavailable || code != 1000037 {
			t.Errorf("REST login %v into the outage: %d %s, want 503 with code 1000037", time.Since(outageStart).Round(time.Millisecond), st, body)
		}
		if took > 2*time.Second {
			t.Errorf("REST login %v into the outage took %v: it must fail within 2 s", time.Since(outageStart).Round(time.Millisecond), took)
		}
		for _, p := range serviceProcs(s) {
			if ready(p.HTTPAddr) == http.StatusServiceUnavailable {
				notReady[p.Name] = true
			}
		}
		time.Sleep(time.Second)
	}
	t.Logf("REST logins during the outage answered in %v", tooks)
	for _, p := range serviceProcs(s) {
		if !notReady[p.Name] {
			t.Errorf("%s never reported not ready (/readyz 503) while etcd had no quorum", p.Name)
		}
	}
	for time.Since(outageStart) < 20*time.Second {
		time.Sleep(100 * time.Millisecond)
	}

	resume()
	quorumBack := time.Now()
	var loggedIn time.Duration
	deadline := quorumBack.Add(30 * time.Second)
	for i := 0; ; i++ {
		st, _, body, _ := restLogin(t, s, room, fmt.Sprintf("rest-after-%d", i))
		if st == http.StatusOK {
			loggedIn = time.Since(quorumBack)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no REST login 30 s after quorum returned; last: %d %s", st, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var allBack time.Duration
	for {
		got := registered(t, s)
		if slices.Equal(got, want) {
			allBack = time.Since(quorumBack)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after quorum returned, registered %v, want %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("after quorum returned: first REST login in %v, every instance registered in %v", loggedIn.Round(time.Millisecond), allBack.Round(time.Millisecond))
	if loggedIn > 10*time.Second || allBack > 10*time.Second {
		t.Errorf("healing took longer than 10 s (login %v, registration %v)", loggedIn, allBack)
	}
	for _, p := range serviceProcs(s) {
		testkit.Eventually(t, p.Name+" ready again", func() bool { return ready(p.HTTPAddr) == http.StatusOK })
		if processGone(p.PID) {
			t.Errorf("%s (pid %d) is gone: nothing may restart", p.Name, p.PID)
		}
	}
	if strings.Contains(logs.String()[logsBefore:], "process exited unexpectedly") {
		t.Errorf("a cluster process exited during the outage")
	}

	// The people in the room never saw each other leave, and the room goes
	// on: a newcomer sees them, they see the newcomer.
	carol := login(t, s, []string{roomA, roomB}, room, "carol")
	testkit.Eventually(t, "carol to see alice", carol.rec.present("alice"))
	testkit.Eventually(t, "carol to see bob", carol.rec.present("bob"))
	testkit.Eventually(t, "alice to see carol", alice.rec.present("carol"))
	testkit.Eventually(t, "bob to see carol", bob.rec.present("carol"))
	if alice.rec.everLeft("bob") || bob.rec.everLeft("alice") {
		t.Error("a user was told that another left because etcd was away")
	}
	for _, c := range []*client{alice, bob} {
		if bad := c.rec.failedStates(); len(bad) > 0 {
			t.Errorf("%s's room states include %v", c.user, bad)
		}
	}
}

// A room replica stopped (SIGSTOP) for twice its lease TTL loses its
// registration; resumed, it heals. Then the other room replica is killed:
// logins through the gateway keep working, served by the healed one.
func TestLocalClusterStalledRoomReplicaComesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process cluster")
	}
	_, s := startCluster(t, "--keep-going")
	pid1, addr1 := s.proc(t, "room-1")
	pid2, _ := s.proc(t, "room-2")
	var http1 string
	for _, p := range serviceProcs(s) {
		if p.Name == "room-1" {
			http1 = p.HTTPAddr
		}
	}
	if err := syscall.Kill(pid1, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid1, syscall.SIGCONT) })
	testkit.Eventually(t, "room-1 to drop out of discovery while stopped", func() bool {
		return !slices.Contains(registered(t, s), "room/"+addr1)
	})
	time.Sleep(4 * time.Second) // twice the cluster's 2 s lease TTL
	if err := syscall.Kill(pid1, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "room-1 registered again", func() bool { return slices.Contains(registered(t, s), "room/"+addr1) })
	testkit.Eventually(t, "room-1 ready again", func() bool { return ready(http1) == http.StatusOK })

	if err := syscall.Kill(pid2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// room-2's lease runs out within its TTL; logins must work throughout
	// once the gateway stops picking the dead replica.
	testkit.Eventually(t, "room-2 out of discovery", func() bool {
		return !slices.ContainsFunc(registered(t, s), func(k string) bool { return strings.HasPrefix(k, "room/") && k != "room/"+addr1 })
	})
	for i := range 5 {
		if st, _, body, _ := restLogin(t, s, "stall-room", fmt.Sprintf("after-%d", i)); st != http.StatusOK {
			t.Fatalf("REST login %d with only the healed room replica: %d %s", i, st, body)
		}
	}
}
