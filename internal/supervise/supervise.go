// Package supervise runs child processes that are needed together and says
// when one of them exits without having been asked to. `onair cluster` runs
// its members with it, and the tests that run the onair binary run theirs
// with it (through internal/testproc), so a process that dies is noticed,
// and named, the same way in both.
package supervise

import (
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one started process.
type Proc struct {
	// Name names the process in errors and logs ("room-1", "onair media").
	Name string
	// Cmd is the started command; its ProcessState is set once Exited is
	// closed.
	Cmd *exec.Cmd

	exited chan struct{}
	// mu guards stopping, waited and err.
	mu       sync.Mutex
	stopping bool
	waited   bool
	err      error // what Wait returned, once waited
}

// Start starts cmd as a process called name. onExit, if not nil, is called
// once the process has exited and been waited for, before Exited is closed;
// unexpected is true when Stop had not been called, i.e. the process died
// or quit on its own. onExit runs on the goroutine that waits for the
// process, which ends with it.
func Start(name string, cmd *exec.Cmd, onExit func(p *Proc, unexpected bool)) (*Proc, error) {
	p := &Proc{Name: name, Cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err, p.waited = err, true
		unexpected := !p.stopping
		p.mu.Unlock()
		if onExit != nil {
			onExit(p, unexpected)
		}
		close(p.exited)
	}()
	return p, nil
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Alive reports whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Status tells how the process ended, as a person reads it: "exit 0",
// "exit status 1", "signal: killed"; "running" while it runs.
func (p *Proc) Status() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.waited {
		return "running"
	}
	if p.err == nil {
		return "exit 0"
	}
	return p.err.Error()
}

// Stop ends the process: SIGTERM first, so it shuts down as in production,
// SIGKILL if it is still there after grace. It returns once the process
// has exited, and reports whether it had to be killed. An exit from here
// on is not unexpected. Stopping a process that has exited does nothing.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if !p.Alive() {
		return false
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = p.Cmd.Process.Kill()
	}
	select {
	case <-p.exited:
		return false
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.exited
		return true
	}
}

// ExitError says that p exited on its own, naming it.
func ExitError(p *Proc) error {
	return fmt.Errorf("%s exited unexpectedly (%s)", p.Name, p.Status())
}

// Group is processes that are needed together: the first that exits
// unexpectedly is the group's failure. The zero Group is ready to use.
type Group struct {
	mu     sync.Mutex
	failed chan struct{} // closed at the first unexpected exit
	first  *Proc
}

func (g *Group) failedLocked() chan struct{} {
	if g.failed == nil {
		g.failed = make(chan struct{})
	}
	return g.failed
}

// Start starts cmd as a member called name; onExit is as for Start, and is
// called before the group learns of the exit.
func (g *Group) Start(name string, cmd *exec.Cmd, onExit func(p *Proc, unexpected bool)) (*Proc, error) {
	g.mu.Lock()
	g.failedLocked()
	g.mu.Unlock()
	return Start(name, cmd, func(p *Proc, unexpected bool) {
		if onExit != nil {
			onExit(p, unexpected)
		}
		if unexpected {
			g.fail(p)
		}
	})
}

func (g *Group) fail(p *Proc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.first == nil {
		g.first = p
		close(g.failedLocked())
	}
}

// Failed is closed once a member has exited unexpectedly.
func (g *Group) Failed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failedLocked()
}

// Err names the first member that exited unexpectedly and how it ended;
// nil while none has.
func (g *Group) Err() error {
	g.mu.Lock()
	p := g.first
	g.mu.Unlock()
	if p == nil {
		return nil
	}
	return ExitError(p)
}
