package sfu

import (
	"runtime"
	"sync"

	"github.com/onair-dev/onair/internal/udpbatch"
)

// ForwardWorkers is the pool's size: twice the cores, so that a player
// whose turn blocks (a full socket) leaves every core busy.
func ForwardWorkers() int { return 2 * runtime.GOMAXPROCS(0) }

// ForwardPool runs the players' forwarding on a few goroutines instead of
// one per player. A publisher's packet queues each of its players once; the
// next free worker sends what that player has due. Waking a player costs an
// append under a lock rather than readying a goroutine, and the workers run
// one player after another on their own stacks, so a player holds no stack
// of its own. A player that is slow holds up one worker, not the others: the
// pool has more workers than cores.
type ForwardPool struct {
	out *udpbatch.Conn // a worker sends what it queued when it runs out of work

	mu    sync.Mutex
	queue []*Player // queue[head:] wait, oldest first
	head  int

	wake chan struct{} // a worker may find work
	done chan struct{}
	wg   sync.WaitGroup
}

// NewForwardPool starts workers goroutines that send through out (nil:
// tests without a socket); Close stops them.
func NewForwardPool(workers int, out *udpbatch.Conn) *ForwardPool {
	p := &ForwardPool{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	for range workers {
		p.wg.Go(p.work)
	}
	return p
}

// Close stops the workers once they finish the player at hand; players
// still queued get no more turns.
func (p *ForwardPool) Close() {
	close(p.done)
	p.wg.Wait()
}

// push queues s, which the caller has moved to stateQueued.
func (p *ForwardPool) push(s *Player) {
	p.mu.Lock()
	p.queue = append(p.queue, s)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest queued player, nil if none. When more wait it wakes
// another worker, which takes the next one if it is idle (a wake for a busy
// pool is a token the next worker to finish drops).
func (p *ForwardPool) pop() *Player {
	p.mu.Lock()
	if p.head == len(p.queue) {
		p.queue, p.head = p.queue[:0], 0
		p.mu.Unlock()
		return nil
	}
	s := p.queue[p.head]
	p.queue[p.head] = nil
	p.head++
	if p.head >= 64 && 2*p.head >= len(p.queue) {
		// Under steady load the queue never empties: move the waiting
		// ones down rather than grow the array forever.
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue, p.head = p.queue[:n], 0
	}
	more := p.head < len(p.queue)
	p.mu.Unlock()
	if more {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return s
}

func (p *ForwardPool) work() {
	p.out.Enter()
	for {
		s := p.pop()
		if s == nil {
			// Out of work: send the batch now, with every player this
			// worker ran in it, rather than wake the socket's flusher.
			p.out.Leave()
			select {
			case <-p.done:
				return
			case <-p.wake:
			}
			p.out.Enter()
			continue
		}
		s.runQueued()
		select {
		case <-p.done: // players still queued are ending with the edge
			p.out.Leave()
			return
		default:
		}
	}
}

// A player's place in the pool. Its forwarding runs on one worker at a
// time: a player woken while a worker runs it goes back in the queue when
// that worker is done.
const (
	stateIdle    int32 = iota
	stateQueued        // in the queue
	stateRunning       // a worker is forwarding
	stateRerun         // woken while running: queue again when done
)

// schedule makes sure a worker looks at s after now.
func (s *Player) schedule() {
	for {
		switch st := s.state.Load(); st {
		case stateIdle:
			if s.state.CompareAndSwap(stateIdle, stateQueued) {
				s.pool.push(s)
				return
			}
		case stateRunning:
			if s.state.CompareAndSwap(stateRunning, stateRerun) {
				return
			}
		default: // queued, or already to run again
			return
		}
	}
}

// runQueued is a worker's turn at s.
func (s *Player) runQueued() {
	s.state.Store(stateRunning)
	select {
	case <-s.done:
		s.state.Store(stateIdle)
		return
	default:
	}
	if s.reportDue.Swap(false) {
		s.senderReports()
	}
	s.forward()
	if !s.state.CompareAndSwap(stateRunning, stateIdle) {
		// Woken meanwhile: to the back of the queue, so a player with
		// a lot to send takes turns with the others.
		s.state.Store(stateQueued)
		s.pool.push(s)
	}
}
