//go:build unix

package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

// userList is an engine's view of the room: the users its OnRoomUserUpdate
// callbacks say are there, and every Delete it was told.
type userList struct {
	express.BaseEventHandler
	mu      sync.Mutex
	users   map[string]bool
	deletes []string
}

func newUserList() *userList { return &userList{users: map[string]bool{}} }

// OnRoomStateChanged starts a new list at each login: the callbacks before
// Logining (queued in order) belong to the session before.
func (l *userList) OnRoomStateChanged(reason express.RoomStateChangedReason, _ int, _, _ string) {
	if reason == express.RoomStateChangedReasonLogining {
		l.mu.Lock()
		l.users = map[string]bool{}
		l.mu.Unlock()
	}
}

func (l *userList) OnRoomUserUpdate(t express.UpdateType, users []express.User, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range users {
		if t == express.UpdateTypeAdd {
			l.users[u.UserID] = true
		} else {
			delete(l.users, u.UserID)
			l.deletes = append(l.deletes, u.UserID)
		}
	}
}

func (l *userList) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for u := range l.users {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func (l *userList) told(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.deletes, user)
}

// call is one LoginRoom or LogoutRoom as the client saw it.
type call struct {
	op    string // "login" or "logout"
	at    time.Duration
	phase string
	err   error
}

func (c call) String() string {
	res := "succeeded"
	if c.err != nil {
		res = fmt.Sprintf("failed (%d: %v)", express.ErrorCode(c.err), c.err)
	}
	return fmt.Sprintf("%s at %.1fs (%s) %s", c.op, c.at.Seconds(), c.phase, res)
}

// member is a user with an engine of its own.
type member struct {
	user  string
	e     *express.Engine
	list  *userList
	tok   string
	mu    sync.Mutex
	calls []call
	in    bool // the last call was a login that succeeded
}

func (m *member) record(c call, in bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, c)
	m.in = in
}

func (m *member) last() (call, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.calls) == 0 {
		return call{}, false
	}
	return m.calls[len(m.calls)-1], true
}

func (m *member) failures() []call {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []call
	for _, c := range m.calls {
		if c.err != nil {
			out = append(out, c)
		}
	}
	return out
}

// phaseClock says which phase of the test it is, for the calls' records.
type phaseClock struct {
	start time.Time
	mu    sync.Mutex
	name  string
}

func (p *phaseClock) set(name string) {
	p.mu.Lock()
	p.name = name
	p.mu.Unlock()
}

func (p *phaseClock) now() (time.Duration, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Since(p.start), p.name
}

// etcdLeader finds the member that leads, by the maintenance Status of
// each endpoint: the one whose own ID is the leader it reports.
func etcdLeader(t *testing.T, cli *clientv3.Client, endpoints []string) string {
	t.Helper()
	var leader string
	testkit.Eventually(t, "an etcd leader", func() bool {
		for _, ep := range endpoints {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, ep)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.GetMemberId() {
				leader = ep
				return true
			}
		}
		return false
	})
	return leader
}

// An etcd leader change is routine (a rolling upgrade, a slow disk): users
// joining and leaving while the leader is stopped (SIGSTOP) for 3 s and then
// for 8 s must end, after a quiet period shorter than the heartbeat
// timeout, with every engine's user list equal to the users really logged
// in; nobody is told a present user left, and no login or logout the
// client saw fail leaves a session behind (a ghost user).
func TestEtcdLeaderChangeLeavesNoGhostUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process cluster")
	}
	_, s := startCluster(t)
	var rooms, endpoints []string
	pidOf := map[string]int{}
	for _, p := range s.Processes {
		if p.Role == "room" {
			rooms = append(rooms, p.GRPCAddr)
		}
		if p.Role == "etcd" {
			pidOf["http://"+p.ClientAddr] = p.PID
			endpoints = append(endpoints, "http://"+p.ClientAddr)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	const room, residents, visitorSlots = "leader-room", 8, 16
	// A client's deadline for one call, as an app would set it.
	const callTimeout = 5 * time.Second
	clock := &phaseClock{start: time.Now(), name: "before"}
	newMember := func(user string, i int) (*member, error) {
		order := append(slices.Clone(rooms[i%len(rooms):]), rooms[:i%len(rooms)]...)
		l := newUserList()
		e, err := express.CreateEngine(express.EngineProfile{AppID: s.AppID, Server: strings.Join(order, ","), ReconnectTimeout: time.Minute}, l)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { e.DestroyEngine(nil) })
		tok, err := token04.Mint(s.AppID, user, s.ServerSecret, time.Hour, nil)
		if err != nil {
			return nil, err
		}
		return &member{user: user, e: e, list: l, tok: tok}, nil
	}
	loginOnce := func(m *member) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		at, phase := clock.now()
		err := m.e.LoginRoom(ctx, room, express.User{UserID: m.user, UserName: m.user},
			express.RoomConfig{IsUserStatusNotify: true, Token: m.tok})
		m.record(call{op: "login", at: at, phase: phase, err: err}, err == nil)
		return err
	}
	logoutOnce := func(m *member) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		at, phase := clock.now()
		err := m.e.LogoutRoom(ctx, room)
		m.record(call{op: "logout", at: at, phase: phase, err: err}, false)
		return err
	}

	// Residents stay all along: nobody may be told they left.
	var stay []*member
	for i := range residents {
		m, err := newMember(fmt.Sprintf("resident-%d", i), i)
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, m.user+" to log in", func() bool { return loginOnce(m) == nil })
		stay = append(stay, m)
	}
	var allMu sync.Mutex
	all := slices.Clone(stay)

	// Visitors come and go, as users of a live event do: each logs in
	// once, stays a moment, logs out once and closes the app
	// (DestroyEngine); one whose call failed does not come back. A new
	// visitor, with a user ID of its own, takes the slot. The visitors
	// in the room when stop closes stay.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for slot := range visitorSlots {
		wg.Go(func() {
			pause := func(from, to int) bool {
				select {
				case <-stop:
					return false
				case <-time.After(time.Duration(from+rand.IntN(to-from)) * time.Millisecond):
					return true
				}
			}
			for n := 0; pause(200, 600); n++ {
				m, err := newMember(fmt.Sprintf("visitor-%d-%d", slot, n), residents+slot)
				if err != nil {
					t.Error(err)
					return
				}
				allMu.Lock()
				all = append(all, m)
				allMu.Unlock()
				if loginOnce(m) != nil {
					m.e.DestroyEngine(nil)
					continue
				}
				if !pause(300, 1200) {
					return
				}
				_ = logoutOnce(m)
				m.e.DestroyEngine(nil)
			}
		})
	}
	stopEtcd := func(phase string, d time.Duration) {
		ep := etcdLeader(t, cli, endpoints)
		pid := pidOf[ep]
		t.Logf("%s: stopping the etcd leader %s (pid %d)", phase, ep, pid)
		clock.set(phase)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		time.Sleep(d)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		clock.set("after " + phase)
	}
	time.Sleep(2 * time.Second)
	stopEtcd("etcd leader stopped 3s", 3*time.Second)
	time.Sleep(3 * time.Second)
	stopEtcd("etcd leader stopped 8s", 8*time.Second)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	clock.set("quiet")
	// The quiet period: far below the heartbeat timeout (90 s), so a
	// session nobody owns is still there, and long enough for every
	// engine's event stream to have caught up.
	time.Sleep(5 * time.Second)

	var want []string
	for _, m := range all {
		if m.in {
			want = append(want, m.user)
		}
	}
	slices.Sort(want)
	// An observer that logs in now sees what the server holds.
	obs, err := newMember("observer", 0)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the observer to log in", func() bool { return loginOnce(obs) == nil })
	lists := func() map[string][]string {
		out := map[string][]string{obs.user: obs.list.list()}
		for _, m := range all {
			if m.in {
				out[m.user] = m.list.list()
			}
		}
		return out
	}
	// What each engine should list: everyone logged in (the observer too)
	// but itself.
	wantOf := func(self string) []string {
		w := append(slices.Clone(want), obs.user)
		slices.Sort(w)
		return slices.DeleteFunc(w, func(u string) bool { return u == self })
	}
	settled := func() bool {
		for who, got := range lists() {
			if !slices.Equal(got, wantOf(who)) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(5 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}

	var failed []string
	for _, m := range all {
		for _, c := range m.failures() {
			failed = append(failed, m.user+" "+c.String())
		}
	}
	t.Logf("%d calls the clients saw fail:\n  %s", len(failed), strings.Join(failed, "\n  "))
	byUser := map[string]*member{}
	for _, m := range all {
		byUser[m.user] = m
	}
	// Ghosts: listed by some engine, not logged in.
	ghosts := map[string][]string{}
	missing := map[string][]string{}
	for who, got := range lists() {
		w := wantOf(who)
		for _, u := range got {
			if !slices.Contains(w, u) {
				ghosts[u] = append(ghosts[u], who)
			}
		}
		for _, u := range w {
			if !slices.Contains(got, u) {
				missing[u] = append(missing[u], who)
			}
		}
	}
	for _, u := range sortedKeys(ghosts) {
		how := "never logged in"
		if m := byUser[u]; m != nil {
			if c, ok := m.last(); ok {
				how = "its last call was " + c.String()
			}
		}
		t.Errorf("ghost user %s: listed by %d engines (%s) though it is not logged in; %s",
			u, len(ghosts[u]), strings.Join(firstFew(ghosts[u]), ", "), how)
	}
	for _, u := range sortedKeys(missing) {
		t.Errorf("user %s is logged in but missing from the lists of %d engines (%s)", u, len(missing[u]), strings.Join(firstFew(missing[u]), ", "))
	}
	// No session of a user who is not logged in: what the server holds,
	// not only what the engines were told.
	for _, m := range all {
		if m.in {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cli.Get(ctx, keys.Session(s.AppID, m.user), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count > 0 {
			c, _ := m.last()
			t.Errorf("session left behind: %s has a session though its last call was %s", m.user, c)
		}
	}
	// Nobody is told a resident left: they never did.
	for _, r := range stay {
		var told []string
		for _, m := range all {
			if m.list.told(r.user) {
				told = append(told, m.user)
			}
		}
		if len(told) > 0 {
			t.Errorf("%d engines (%s) were told %s left, who never did", len(told), strings.Join(firstFew(told), ", "), r.user)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// firstFew keeps a failure message short: the first five, sorted.
func firstFew(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if len(s) > 5 {
		return append(s[:5], fmt.Sprintf("and %d more", len(s)-5))
	}
	return s
}
