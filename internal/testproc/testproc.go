// Package testproc holds what tests that run the onair binary as real
// processes share: building it, picking loopback addresses, starting
// processes on them (again, if another test took an address first) and
// stopping them when the test ends, and a log buffer the processes and the
// test use at once.
package testproc

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/supervise"
)

// BuildOnair builds ./cmd/onair of this module into the test's temporary
// directory and returns its path. It skips the test when there is no go
// command to build with.
func BuildOnair(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is needed to build onair:", err)
	}
	bin := filepath.Join(t.TempDir(), "onair")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/onair")
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/onair: %v\n%s", err, out)
	}
	return bin
}

// moduleRoot is the repository's root, found from this file's place in it,
// so callers in any package build the same binary.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// FreeAddr picks a free loopback TCP address by listening and closing. It
// is free only when picked: a process started on it should be started with
// StartOnFreeAddrs, which starts it again on new addresses if another test
// took one first.
func FreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proc is a process a test started with Start: its output goes to Log, and
// it is stopped when the test ends. It is supervised as `onair cluster`
// supervises its members (internal/supervise).
type Proc struct {
	*supervise.Proc
	// Log is what the process writes to its stdout and stderr, those of
	// them the caller left unset.
	Log *Log
}

// Start starts cmd, with its stdout and stderr (those the caller did not
// set) going to the Proc's Log. When the test ends the process is stopped
// (Stop) and, if the test failed, its log is printed, so a failure at any
// point shows what the process said.
func Start(t *testing.T, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Log: &Log{}}
	if cmd.Stdout == nil {
		cmd.Stdout = p.Log
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.Log
	}
	sp, err := supervise.Start(procName(cmd), cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Proc = sp
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s log:\n%s", p, p.Log)
		}
	})
	return p
}

// procName names a process as a person would: "onair media".
func procName(cmd *exec.Cmd) string {
	name := filepath.Base(cmd.Path)
	if len(cmd.Args) > 1 {
		name += " " + cmd.Args[1]
	}
	return name
}

// String names the process as a person would: "onair media".
func (p *Proc) String() string { return p.Name }

// stopGrace is how long Stop lets a process shut down on SIGTERM before it
// kills it.
const stopGrace = 10 * time.Second

// Stop ends the process, SIGTERM first so it shuts down as in production
// (and lets children of its own go), SIGKILL if it is still there after
// stopGrace, and returns once it has exited. Stopping a process that has
// exited does nothing.
func (p *Proc) Stop() { p.Proc.Stop(stopGrace) }

// AddrInUse reports whether s, a process's log or an error's text, tells of
// a listen that failed because another process had the address.
func AddrInUse(s string) bool { return strings.Contains(s, "address already in use") }

// StartTries is how many times StartOnFreeAddrs starts processes whose
// picked addresses were taken: one loss is rare, three in a row would mean
// something else is wrong.
const StartTries = 3

// startWithin bounds how long StartOnFreeAddrs waits for ready on each try;
// generous, for correctness on a loaded machine, not a performance check.
const startWithin = 2 * time.Minute

// StartOnFreeAddrs starts processes with start and waits until ready
// reports true, starting them again on new addresses if one lost an
// address to another process.
//
// An address from FreeAddr is only free when it is picked: until the
// process listens on it, any other test (go test runs packages in
// parallel) may take it, and the process then exits with "address already
// in use". So start must pick every address with FreeAddr each time it is
// called, and start the processes (with Start) that listen on them. If one
// of them exits with such an error in its log before ready holds, all of
// them are stopped and start is called again, up to StartTries times. Any
// other exit, or no ready within two minutes, fails the test; the
// processes' logs are printed as the test ends.
//
// ready should answer quickly (a request with a short timeout) and return
// false while a process is not serving yet; it is polled every 50 ms, and
// the processes are checked for an exit in between. It should ask what only
// these processes answer (their health service, a line of their output),
// not merely whether their port takes a connection: a port lost to another
// test takes connections too.
func StartOnFreeAddrs(t *testing.T, start func() []*Proc, ready func() bool) {
	t.Helper()
	for try := 1; ; try++ {
		procs := start()
		lost, err := waitReady(procs, ready)
		if err == nil {
			return
		}
		if lost == nil || try == StartTries {
			t.Fatalf("%v (try %d of %d)", err, try, StartTries)
		}
		t.Logf("%s lost a picked address to another process (try %d of %d); starting again on new ones:\n%s",
			lost, try, StartTries, lost.Log)
		for _, p := range procs {
			p.Stop()
		}
	}
}

// waitReady polls ready until it holds or one of procs exits. lost is the
// process that exited on an address in use.
func waitReady(procs []*Proc, ready func() bool) (lost *Proc, err error) {
	deadline := time.Now().Add(startWithin)
	for !ready() {
		for _, p := range procs {
			if p.Alive() {
				continue
			}
			if AddrInUse(p.Log.String()) {
				return p, fmt.Errorf("%s exited: an address it was given is in use", p)
			}
			return nil, fmt.Errorf("%s exited while starting: %v", p, p.Cmd.ProcessState)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%v not ready after %v", procs, startWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, nil
}

// Log collects output that processes write while the test reads it.
type Log = supervise.Log
