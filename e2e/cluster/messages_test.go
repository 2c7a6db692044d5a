//go:build unix

package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/sdk/express"
)

// msgRecorder is a recorder that also keeps the broadcast messages.
type msgRecorder struct {
	*recorder
	mmu  sync.Mutex
	msgs []string
}

func (r *msgRecorder) OnIMRecvBroadcastMessage(msgs []express.BroadcastMessageInfo, _ string) {
	r.mmu.Lock()
	defer r.mmu.Unlock()
	for _, m := range msgs {
		r.msgs = append(r.msgs, m.Message)
	}
}

func (r *msgRecorder) messages() []string {
	r.mmu.Lock()
	defer r.mmu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *msgRecorder) got(msg string) func() bool {
	return func() bool { return slices.Contains(r.messages(), msg) }
}

func msgLogin(t *testing.T, s *summary, servers []string, room, user string) (*express.Engine, *msgRecorder) {
	t.Helper()
	rec := &msgRecorder{recorder: newRecorder()}
	return loginWith(t, s, servers, room, user, rec), rec
}

// Room messages on the local cluster as real processes: the sender and a
// receiver on different room replicas (and one receiver next to the
// sender); one NATS server killed, and messages keep flowing; the
// receiver's room replica killed, and after the SDK reconnected to the
// other replica messages reach it again. Whatever is accepted while every
// part is up arrives exactly once, in order.
func TestLocalClusterRoomMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process cluster")
	}
	cluster, s := startCluster(t, "--keep-going")
	logs := cluster.Log
	roomAPID, roomA := s.proc(t, "room-1")
	_, roomB := s.proc(t, "room-2")
	const room = "msg-cluster-room"

	_, alice := msgLogin(t, s, []string{roomA, roomB}, room, "alice")
	_, bob := msgLogin(t, s, []string{roomB, roomA}, room, "bob")
	carol, _ := msgLogin(t, s, []string{roomB, roomA}, room, "carol")
	// Every receiver's event stream must be open before the first send:
	// messages reach only receivers connected when they are accepted.
	testkit.Eventually(t, "alice to see carol", alice.present("carol"))
	testkit.Eventually(t, "bob to see carol", bob.present("carol"))

	ctx := context.Background()
	// send keeps to the room's rate limit (10 per second on a replica).
	send := func(msg string) error {
		for {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := carol.SendBroadcastMessage(sctx, room, msg)
			cancel()
			if express.ErrorCode(err) != int(errcode.TooManyRequests) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var want []string
	for i := range 50 {
		msg := fmt.Sprintf("a%02d", i)
		if err := send(msg); err != nil {
			t.Fatalf("send %s: %v", msg, err)
		}
		want = append(want, msg)
	}
	for name, r := range map[string]*msgRecorder{"alice": alice, "bob": bob} {
		testkit.Eventually(t, name+" to get the first 50", func() bool { return len(r.messages()) >= 50 })
		if got := r.messages(); !slices.Equal(got, want) {
			t.Errorf("%s got %v, want %v", name, got, want)
		}
	}

	// The NATS server the sender's replica is on dies: the replicas on it
	// reconnect to another one and messages keep flowing (a send in the
	// moment may fail: retried).
	natsPID := natsServerOf(t, s, logs.String(), "room-2")
	if err := syscall.Kill(natsPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Messages sent while a replica reconnects to NATS may be missed (as
	// while a client reconnects); soon every one arrives again.
	k := 0
	testkit.Eventually(t, "messages to flow again after the NATS server died", func() bool {
		k++
		msg := fmt.Sprintf("k%02d", k)
		if err := send(msg); err != nil {
			t.Logf("send %s: %v", msg, err)
			time.Sleep(100 * time.Millisecond)
			return false
		}
		time.Sleep(200 * time.Millisecond)
		return alice.got(msg)() && bob.got(msg)()
	})
	for i := range 20 {
		msg := fmt.Sprintf("b%02d", i)
		if err := send(msg); err != nil {
			t.Fatalf("send %s with a NATS server down: %v", msg, err)
		}
	}
	for name, r := range map[string]*msgRecorder{"alice": alice, "bob": bob} {
		testkit.Eventually(t, name+" to get all 20 sent with a NATS server down", r.got("b19"))
		var bs []string
		for _, m := range r.messages() {
			if strings.HasPrefix(m, "b") {
				bs = append(bs, m)
			}
		}
		if len(bs) != 20 || !slices.IsSorted(bs) {
			t.Errorf("%s got %v with a NATS server down, want b00..b19 in order", name, bs)
		}
	}

	// Alice's room replica dies: her SDK reconnects to room-2, and
	// messages reach her there.
	if err := syscall.Kill(roomAPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the cluster to notice room-1 died", func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("name=room-1 pid=%d status=\"signal: killed\"", roomAPID))
	})
	testkit.Eventually(t, "alice to reconnect", alice.reconnected)
	i := 0
	testkit.Eventually(t, "messages to reach alice after her reconnect", func() bool {
		i++
		msg := fmt.Sprintf("c%02d", i)
		if err := send(msg); err != nil {
			t.Logf("send %s: %v", msg, err)
			return false
		}
		time.Sleep(200 * time.Millisecond)
		return slices.Contains(alice.messages(), msg)
	})
	// Nothing was delivered twice.
	for name, r := range map[string]*msgRecorder{"alice": alice, "bob": bob} {
		seen := map[string]bool{}
		for _, m := range r.messages() {
			if seen[m] {
				t.Errorf("%s got %q twice", name, m)
			}
			seen[m] = true
		}
	}
}

// natsServerOf finds the NATS server a replica connected to, from its log.
func natsServerOf(t *testing.T, s *summary, log, replica string) int {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, replica+" ") || !strings.Contains(line, `msg="nats connected"`) {
			continue
		}
		for i, u := range s.NATSURLs {
			if strings.Contains(line, "server="+u) {
				pid, _ := s.proc(t, fmt.Sprintf("nats-%d", i+1))
				return pid
			}
		}
	}
	t.Fatalf("no NATS connection of %s in the log", replica)
	return 0
}
