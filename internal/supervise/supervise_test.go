//go:build unix

package supervise

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A member that dies on its own fails the group, named with how it ended;
// one that is stopped does not.
func TestGroupFailsOnUnexpectedExit(t *testing.T) {
	var g Group
	calm, err := g.Start("calm", exec.Command("sleep", "60"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer calm.Stop(time.Second)
	stopped, err := g.Start("stopped", exec.Command("sleep", "60"), nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped.Stop(10 * time.Second)
	if g.Err() != nil {
		t.Fatalf("a stopped member failed the group: %v", g.Err())
	}
	select {
	case <-g.Failed():
		t.Fatal("the group failed when a member was stopped")
	default:
	}
	var told []string
	if _, err := g.Start("dies", exec.Command("sh", "-c", "exit 3"), func(p *Proc, unexpected bool) {
		told = append(told, p.Name)
		if !unexpected {
			t.Error("an exit nobody asked for is reported as expected")
		}
	}); err != nil {
		t.Fatal(err)
	}
	<-g.Failed()
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "dies exited unexpectedly (exit status 3)") {
		t.Fatalf("group error %v", err)
	}
	if len(told) != 1 {
		t.Fatalf("onExit told %v", told)
	}
	if !calm.Alive() || calm.Status() != "running" {
		t.Fatalf("calm is %s", calm.Status())
	}
}

// Stop ends a process that ignores SIGTERM with SIGKILL after the grace.
func TestStopKillsAfterGrace(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' TERM; echo ready; exec sleep 60")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start("stubborn", cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	// SIGTERM is ignored once the shell has said so.
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if !p.Stop(200 * time.Millisecond) {
		t.Fatalf("Stop returned without a kill, status %s", p.Status())
	}
	if p.Alive() || p.Status() != "signal: killed" {
		t.Fatalf("after Stop: %s", p.Status())
	}
}
