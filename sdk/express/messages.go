package express

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// Room messages go to the server over one SendRoomMessages stream per
// engine, opened by the first send and closed after messageStreamIdle
// without one: a message is then a frame on an open stream, not a call of
// its own, which costs the server a third less per message (no headers to
// parse and answer, no goroutine, no deadline timer). A server without
// the stream (an older one) answers Unimplemented, and the engine sends
// each message with SendRoomMessage from then on. What a message gets is
// the same either way: the server runs SendRoomMessage's code for each,
// in the order sent.

// messageStreamIdle is how long the stream stays open without a send: an
// engine that sends now and then does not hold a stream (and a goroutine
// on its server) all its life.
const messageStreamIdle = 30 * time.Second

// messageSender holds the engine's message stream.
type messageSender struct {
	mu          sync.Mutex
	cur         *messageStream
	unsupported bool // the server has no SendRoomMessages
	next        uint64
}

// messageStream is one SendRoomMessages call and the sends waiting for
// their answers.
type messageStream struct {
	stream  roomv1.RoomService_SendRoomMessagesClient
	cancel  context.CancelFunc
	pending map[uint64]chan messageResult // guarded by messageSender.mu
	idle    *time.Timer
	done    bool
}

type messageResult struct {
	id  string
	err error
}

// sendMessage sends req and returns the message ID.
func (e *Engine) sendMessage(ctx context.Context, req *roomv1.SendRoomMessageRequest) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", status.FromContextError(err).Err() // as a call would
	}
	m := &e.msgs
	m.mu.Lock()
	if m.unsupported {
		m.mu.Unlock()
		return e.sendMessageCall(ctx, req)
	}
	ms := m.cur
	if ms == nil {
		sctx, cancel := context.WithCancel(e.bgCtx)
		stream, err := e.rooms.SendRoomMessages(sctx)
		if err != nil {
			cancel()
			m.mu.Unlock()
			return e.sendMessageCall(ctx, req)
		}
		ms = &messageStream{stream: stream, cancel: cancel, pending: map[uint64]chan messageResult{}}
		ms.idle = time.AfterFunc(messageStreamIdle, func() { m.closeIdle(ms) })
		m.cur = ms
		go m.receive(ms)
	}
	m.next++
	id := m.next
	ch := make(chan messageResult, 1)
	ms.pending[id] = ch
	ms.idle.Reset(messageStreamIdle)
	// Sent under the lock: the stream's sends are not concurrent, and the
	// server answers in this order.
	err := ms.stream.Send(&roomv1.SendRoomMessagesRequest{RequestId: id, Message: req})
	m.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) {
		// io.EOF: the stream ended; receive fails the pending sends with
		// its status.
		m.fail(ms, err)
	}
	select {
	case r := <-ch:
		if r.err == errStreamUnimplemented {
			return e.sendMessageCall(ctx, req)
		}
		return r.id, r.err
	case <-ctx.Done():
		m.mu.Lock()
		delete(ms.pending, id)
		m.mu.Unlock()
		return "", status.FromContextError(ctx.Err()).Err()
	}
}

// sendMessageCall sends req with a call of its own.
func (e *Engine) sendMessageCall(ctx context.Context, req *roomv1.SendRoomMessageRequest) (string, error) {
	resp, err := e.rooms.SendRoomMessage(ctx, req)
	if err != nil {
		return "", err
	}
	return resp.GetMessageId(), nil
}

// errStreamUnimplemented marks the sends a server without SendRoomMessages
// failed: they go again as calls of their own.
var errStreamUnimplemented = status.Error(codes.Unimplemented, "the server has no SendRoomMessages")

// receive hands each answer to its send until the stream ends, then fails
// the sends still waiting.
func (m *messageSender) receive(ms *messageStream) {
	for {
		resp, err := ms.stream.Recv()
		if err != nil {
			if status.Code(err) == codes.Unimplemented {
				m.mu.Lock()
				m.unsupported = true
				m.mu.Unlock()
				err = errStreamUnimplemented
			} else if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the server ended the message stream")
			}
			m.fail(ms, err)
			return
		}
		r := messageResult{id: resp.GetMessageId()}
		if len(resp.GetStatus()) > 0 {
			st := new(spb.Status)
			if err := proto.Unmarshal(resp.GetStatus(), st); err != nil {
				r.err = status.Errorf(codes.Internal, "bad status from the server: %v", err)
			} else {
				r.err = status.ErrorProto(st)
			}
		}
		m.mu.Lock()
		ch := ms.pending[resp.GetRequestId()]
		delete(ms.pending, resp.GetRequestId())
		m.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// fail ends ms: every send still waiting gets err, and the next send opens
// a new stream.
func (m *messageSender) fail(ms *messageStream, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == ms {
		m.cur = nil
	}
	if !ms.done {
		ms.done = true
		ms.idle.Stop()
		ms.cancel()
	}
	for id, ch := range ms.pending {
		ch <- messageResult{err: err}
		delete(ms.pending, id)
	}
}

// closeIdle ends ms if nothing was sent on it for messageStreamIdle.
func (m *messageSender) closeIdle(ms *messageStream) {
	m.mu.Lock()
	if m.cur != ms {
		m.mu.Unlock()
		return
	}
	if len(ms.pending) > 0 {
		// A send still waits for its answer: idle from then on.
		ms.idle.Reset(messageStreamIdle)
		m.mu.Unlock()
		return
	}
	m.cur = nil
	m.mu.Unlock()
	m.fail(ms, status.Error(codes.Canceled, "message stream closed while idle"))
}
