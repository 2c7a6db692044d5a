package room

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// Room messages (broadcast messages and custom commands) travel between
// room replicas over NATS, not through etcd: they need no order with the
// room's state and no history, so they cost no etcd write and no Raft
// round.
//
// Interest is per room: a replica subscribes to a room's subject while it
// has at least one local subscriber in that room and unsubscribes when the
// last one leaves, so it receives only the messages of rooms it serves. A
// send publishes once; every replica with receivers in the room hands it
// to them.
//
// What a client can count on:
//   - A receiver whose event stream is open when a message is accepted
//     (SendRoomMessage returned its ID) gets it exactly once.
//   - One sender's messages arrive in the order they were sent: a
//     replica's sends leave on its one NATS connection in the order they
//     were accepted, and NATS keeps one connection's order.
//   - Messages sent while a receiver reconnects (its stream broke and is
//     being resumed, on this replica or another) may be missed, as with the
//     vendor: messages carry no revision and are not part of the resume
//     history. Room state (users, streams, extra info) still resumes
//     without gaps.
//   - The broadcast rate limit (Config.MessageRate) holds per room on each
//     replica, not cluster-wide.
//   - NATS unreachable: sends answer UNAVAILABLE (1000037) at once; logins,
//     room events and everything else keep working. The connection
//     reconnects and resubscribes by itself.
//   - A message is accepted once it is queued on a connected NATS
//     connection; the send does not wait for a round trip to the server
//     (that wait cost as much CPU as the delivery itself). If the
//     connection breaks in the instant after, what it had not yet written
//     is lost, as a NATS server that dies loses what it had not yet passed
//     on.
//
// The sending replica hands a message to its own subscribers of the room
// directly, not through NATS: the connection is opened without echo
// (natsconn), and a message that comes back anyway (a connection opened
// elsewhere) is recognised by the replica's ID and dropped.

// A message travels between replicas in one encoding, protobuf: an
// envelope whose fields are, by number,
//
//	1 origin        string  the sending replica (relay.id), first, so an
//	                        echo is told from its first bytes (originTag)
//	2 message       bytes   the roomv1.RoomMessage, embedded as is
//	3 to            string  repeated: a custom command's receivers
//	4 from_session  string  the sender's session (not echoed to it)
//	5 accepted_ns   int64   when the sending replica accepted it (Unix
//	                        ns): the start of the delivery delay
//
// The message is decoded once, by the receiving replica, and handed to its
// subscribers; nothing wraps it in another format.
const (
	envOrigin protowire.Number = iota + 1
	envMessage
	envTo
	envFromSession
	envAcceptedNs
)

// envelope is a decoded relay envelope.
type envelope struct {
	msg         *roomv1.RoomMessage
	to          []string
	fromSession string
	accepted    time.Time
}

// encode builds the envelope of msg from this replica.
func (r *relay) encode(msg *roomv1.RoomMessage, to []string, fromSession string, accepted time.Time) ([]byte, error) {
	size := proto.Size(msg)
	b := make([]byte, 0, len(r.originTag)+size+len(fromSession)+32)
	b = append(b, r.originTag...)
	b = protowire.AppendTag(b, envMessage, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, msg)
	if err != nil {
		return nil, err
	}
	for _, u := range to {
		b = protowire.AppendTag(b, envTo, protowire.BytesType)
		b = protowire.AppendString(b, u)
	}
	b = protowire.AppendTag(b, envFromSession, protowire.BytesType)
	b = protowire.AppendString(b, fromSession)
	b = protowire.AppendTag(b, envAcceptedNs, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(accepted.UnixNano()))
	return b, nil
}

// decodeEnvelope reads an envelope; unknown fields are skipped.
func decodeEnvelope(b []byte) (envelope, error) {
	var ev envelope
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ev, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == envMessage && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			ev.msg = new(roomv1.RoomMessage)
			if err := proto.Unmarshal(v, ev.msg); err != nil {
				return ev, err
			}
			b = b[n:]
		case (num == envTo || num == envFromSession) && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			if num == envTo {
				ev.to = append(ev.to, v)
			} else {
				ev.fromSession = v
			}
			b = b[n:]
		case num == envAcceptedNs && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			ev.accepted = time.Unix(0, int64(v))
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	if ev.msg == nil {
		return ev, errors.New("no message in the envelope")
	}
	return ev, nil
}

// messageSubject is a room's subject: the room ID is base64url encoded, since
// it may hold characters that mean something in a subject ('.', '*', '>').
func messageSubject(k roomKey) string {
	return "onair.room.msg." + strconv.FormatUint(uint64(k.app), 10) + "." + base64.RawURLEncoding.EncodeToString([]byte(k.room))
}

// relay carries one replica's room messages.
type relay struct {
	nc  *nats.Conn // nil: this replica alone (tests, single process)
	log *slog.Logger
	// id tells this replica's messages from others' when NATS echoes them;
	// originTag is field 1 of its envelopes, id encoded: an envelope that
	// starts with it is our own.
	id        string
	originTag []byte

	// linger keeps a room's subscription this long after its last local
	// subscriber left (the hub's linger): a user alone in a room, in and
	// out under churn, then costs NATS no subscribe, flush round trip and
	// unsubscribe per login (each also sent along every route of the
	// cluster).
	linger time.Duration

	mu    sync.Mutex
	rooms map[roomKey]*interest

	sent, delivered metric.Int64Counter
	delay           metric.Float64Histogram
}

// interest is a replica's subscription to one room's messages.
type interest struct {
	n     int // local subscribers
	sub   *nats.Subscription
	ready chan struct{} // closed once the server has the subscription
	// idle counts the times n fell to zero: a lingering unsubscribe goes
	// ahead only if no subscriber came and left since it was scheduled.
	idle int
}

func newRelay(cfg Config) *relay {
	r := &relay{nc: cfg.NATS, log: cfg.Logger, id: newID(), rooms: map[roomKey]*interest{}, linger: cfg.HubLinger}
	r.originTag = protowire.AppendString(protowire.AppendTag(nil, envOrigin, protowire.BytesType), r.id)
	mp := cfg.Meter
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/onair-dev/onair/services/room")
	r.sent, _ = m.Int64Counter("onair.room.messages.sent", metric.WithDescription("room messages (broadcast and custom commands) accepted and published by this replica"))
	r.delivered, _ = m.Int64Counter("onair.room.messages.delivered", metric.WithDescription("room messages handed to a subscriber's event stream on this replica"))
	r.delay, _ = m.Float64Histogram("onair.room.messages.delivery_delay", metric.WithUnit("s"),
		metric.WithDescription("from a room message's acceptance (on any replica) to its hand-off to this replica's subscribers of the room (one record per message and replica)"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
	_, _ = m.Int64ObservableGauge("onair.room.nats.connected", metric.WithDescription("1 while the replica's NATS connection is up, 0 while it reconnects"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if r.nc != nil && r.nc.Status() == nats.CONNECTED {
				o.Observe(1)
			} else if r.nc != nil {
				o.Observe(0)
			}
			return nil
		}))
	_, _ = m.Int64ObservableCounter("onair.room.nats.reconnects", metric.WithDescription("times the replica's NATS connection reconnected"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if r.nc != nil {
				o.Observe(int64(r.nc.Stats().Reconnects))
			}
			return nil
		}))
	_, _ = m.Int64ObservableGauge("onair.room.messages.rooms", metric.WithDescription("rooms whose messages this replica subscribes to"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			r.mu.Lock()
			n := len(r.rooms)
			r.mu.Unlock()
			o.Observe(int64(n))
			return nil
		}))
	return r
}

// join registers a local subscriber of room k; the replica subscribes to
// the room's messages with the first one. It returns once the NATS server
// has the subscription (or a second has passed), with the interest the
// subscriber hands back to leave, once. (An interest rather than a
// function that leaves: that closure and its sync.Once were some 100
// bytes of every idle session's heap.)
func (r *relay) join(s *Server, k roomKey) *interest {
	if r.nc == nil {
		return nil
	}
	r.mu.Lock()
	in := r.rooms[k]
	created := in == nil
	if created {
		in = &interest{ready: make(chan struct{})}
		sub, err := r.nc.Subscribe(messageSubject(k), func(m *nats.Msg) { r.receive(s, k, m.Data) })
		if err != nil {
			// Only a closed connection refuses; the replica is stopping.
			r.log.Warn("subscribe to room messages", "room", k.room, "err", err)
		} else {
			_ = sub.SetPendingLimits(-1, 256<<20)
		}
		in.sub = sub
		r.rooms[k] = in
	}
	in.n++
	r.mu.Unlock()
	if created {
		// While NATS is away the subscription is sent when it is back.
		_ = r.nc.FlushTimeout(time.Second)
		close(in.ready)
	} else {
		select {
		case <-in.ready:
		case <-time.After(time.Second):
		}
	}
	return in
}

// leave ends a subscriber's join of room k (in is what join returned).
func (r *relay) leave(k roomKey, in *interest) {
	if in == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	in.n--
	if in.n > 0 {
		return
	}
	in.idle++
	if r.linger <= 0 {
		r.drop(k, in)
		return
	}
	idle := in.idle
	time.AfterFunc(r.linger, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if in.n == 0 && in.idle == idle {
			r.drop(k, in)
		}
	})
}

// drop ends a room's subscription. Called with r.mu held.
func (r *relay) drop(k roomKey, in *interest) {
	if r.rooms[k] == in {
		delete(r.rooms, k)
	}
	if in.sub != nil {
		_ = in.sub.Unsubscribe()
	}
}

// errNoMessaging is the answer to a send while NATS is unreachable.
func errNoMessaging(err error) error {
	msg := "room messages cannot be sent right now: the message bus (NATS) is unreachable; the server reconnects by itself, try again shortly"
	if err != nil {
		msg += fmt.Sprintf(" (%v)", err)
	}
	return errcode.New(errcode.ServiceUnavailable, msg)
}

// publish sends a message to every replica with receivers in room k and
// hands it to this replica's own receivers. It returns once the message is
// queued on the connected NATS connection, or UNAVAILABLE at once when NATS
// is away (and then nobody gets it).
func (r *relay) publish(s *Server, k roomKey, msg *roomv1.RoomMessage, to []string, fromSession string) error {
	accepted := time.Now()
	if r.nc != nil {
		data, err := r.encode(msg, to, fromSession, accepted)
		if err != nil {
			return err
		}
		if st := r.nc.Status(); st != nats.CONNECTED {
			return errNoMessaging(fmt.Errorf("connection %s", st))
		}
		// Publish only queues: the connection's own writer sends what is
		// queued at once, many messages per write when they come fast.
		if err := r.nc.Publish(messageSubject(k), data); err != nil {
			return errNoMessaging(err)
		}
	}
	r.sent.Add(context.Background(), 1)
	r.local(s, k, msg, to, fromSession, accepted)
	return nil
}

// receive hands a message published by another replica to the room's
// local subscribers. The connection is opened without echo (natsconn);
// should one echo anyway, the replica's own message is dropped by its
// first bytes, before any decoding: publish handed it to the local
// subscribers already.
func (r *relay) receive(s *Server, k roomKey, data []byte) {
	if bytes.HasPrefix(data, r.originTag) {
		return
	}
	ev, err := decodeEnvelope(data)
	if err != nil {
		r.log.Warn("bad room message", "room", k.room, "err", err)
		return
	}
	r.local(s, k, ev.msg, ev.to, ev.fromSession, ev.accepted)
}

// local hands a message to this replica's subscribers of room k.
func (r *relay) local(s *Server, k roomKey, msg *roomv1.RoomMessage, to []string, fromSession string, accepted time.Time) {
	s.mu.Lock()
	h := s.hubs[k]
	s.mu.Unlock()
	if h == nil {
		return
	}
	// Revision 0: a message is not part of the room's revisioned history, so
	// it never moves a client's resume point (nor is it resumed).
	it := &item{route: &route{to: to, fromSession: fromSession}, ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_Message{Message: msg}}}
	// Encoded once for all the room's receivers, not once each.
	if b, err := proto.Marshal(it.ev); err == nil {
		it.route.wire = b
	}
	n := h.deliver(it)
	if n == 0 {
		return
	}
	ctx := context.Background()
	r.delivered.Add(ctx, int64(n))
	// Once per message and replica: its hand-offs here happen together,
	// and a record per receiver cost as much as a tenth of the delivery.
	r.delay.Record(ctx, max(time.Since(accepted).Seconds(), 0))
}

// deliver hands a message to the hub's subscribers that want it, in line
// with the room's other events, and reports how many did. Messages do not
// enter the resume ring.
func (h *hub) deliver(it *item) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for sub := range h.subs {
		if sub.push(it) {
			n++
		}
	}
	return n
}

// SendRoomMessage broadcasts a message or sends a custom command. It
// travels over NATS to the replicas with receivers in the room, never
// through etcd (see messages.go for what a client can count on).
func (s *Server) SendRoomMessage(ctx context.Context, req *roomv1.SendRoomMessageRequest) (*roomv1.SendRoomMessageResponse, error) {
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetContent() == "":
		return nil, errcode.New(errcode.InvalidParameter, "message is empty")
	case len(req.GetContent()) > maxMessage:
		return nil, errcode.New(errcode.MessageTooLong, "message is longer than 1 KB")
	}
	kind := req.GetKind()
	switch kind {
	case roomv1.MessageKind_MESSAGE_KIND_UNSPECIFIED:
		kind = roomv1.MessageKind_MESSAGE_KIND_BROADCAST
	case roomv1.MessageKind_MESSAGE_KIND_CUSTOM_COMMAND:
		if len(req.GetToUserIds()) == 0 {
			return nil, errcode.New(errcode.InvalidParameter, "a custom command needs at least one receiver")
		}
	}
	if kind != roomv1.MessageKind_MESSAGE_KIND_CUSTOM_COMMAND && !s.limits(roomKey{rec.AppID, rec.RoomID}).message.Allow() {
		return nil, errcode.Newf(errcode.TooManyRequests, "too many messages in room %q: at most %v per second", rec.RoomID, s.cfg.MessageRate)
	}
	msg := &roomv1.RoomMessage{MessageId: strconv.FormatUint(randUint64(), 10), Kind: kind,
		FromUser: &roomv1.User{UserId: rec.UserID, UserName: rec.UserName}, Content: req.GetContent(), SendTimeMs: s.cfg.Now().UnixMilli()}
	if err := s.msgs.publish(s, roomKey{rec.AppID, rec.RoomID}, msg, req.GetToUserIds(), rec.SessionID); err != nil {
		return nil, err
	}
	return &roomv1.SendRoomMessageResponse{MessageId: msg.MessageId}, nil
}

// SendRoomMessages answers SendRoomMessage for each request of the stream,
// in order, on this call's goroutine: a message then costs no call of its
// own (see roomv1).
func (s *Server) SendRoomMessages(srv roomv1.RoomService_SendRoomMessagesServer) error {
	ctx := srv.Context()
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &roomv1.SendRoomMessagesResponse{RequestId: req.GetRequestId()}
		out, err := s.SendRoomMessage(ctx, req.GetMessage())
		if err != nil {
			if resp.Status, err = proto.Marshal(status.Convert(err).Proto()); err != nil {
				return err
			}
		} else {
			resp.MessageId = out.GetMessageId()
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}
