// Package room is the room service: logins and sessions, room membership,
// room extra info and messages, and the revision-ordered event stream that
// tells every client in a room who and what comes and goes.
//
// The service is stateless: etcd holds every session (under a lease per
// session, so a client that stops heartbeating vanishes after the timeout)
// and every replica can serve every client. Each replica keeps one hub per
// active room that watches the room once and fans events out to its local
// subscribers.
package room

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/keys"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// Defaults, from the vendor where it has one.
const (
	DefaultSessionTimeout      = 90 * time.Second
	DefaultLoginRate           = 200 // logins per second per room
	DefaultMessageRate         = 10  // broadcast messages per second per room
	DefaultOnlineCountInterval = 30 * time.Second
	DefaultUserBatchWindow     = 50 * time.Millisecond
	// TokenWarning is how long before expiry a client is told to renew.
	TokenWarning = 30 * time.Second

	maxExtraInfoKey   = 128
	maxExtraInfoValue = 4096
	maxMessage        = 1024
	maxKick           = 5
)

// Config configures the room service.
type Config struct {
	Etcd    *clientv3.Client
	Auth    authv1.AuthServiceClient
	Streams streamv1.StreamServiceClient
	// SessionTimeout removes a session that has not sent a heartbeat for
	// this long (the vendor's is 90 s).
	SessionTimeout time.Duration
	// LoginRate limits logins per room per second on each replica.
	LoginRate float64
	// MessageRate limits broadcast messages per room per second per replica.
	MessageRate float64
	// NATS carries room messages between replicas (see messages.go); nil
	// delivers them to this replica's own subscribers only (one replica).
	NATS *nats.Conn
	// OnlineCountInterval is how often subscribers get the online count
	// when it changed.
	OnlineCountInterval time.Duration
	// UserBatchWindow is how long user updates are collected into one
	// message in rooms of more than a hundred users.
	UserBatchWindow time.Duration
	// EmptyRoomLinger keeps a room that has emptied open this long before
	// it closes (closing.go); DefaultEmptyRoomLinger if zero, at once if
	// negative.
	EmptyRoomLinger time.Duration
	// HubLinger keeps an idle room hub (and its resume history) this long
	// after its last subscriber left.
	HubLinger time.Duration
	// Lease is the replica's current lease (its discovery lease): the
	// lifecycle watcher's leadership and the callback deliverer's room
	// claims live under it. Without it the replica runs neither, and
	// leaves both to other replicas.
	Lease func() clientv3.LeaseID
	// CallbackRetryBase and CallbackTimeout tune callback delivery (see
	// callback.Config); zero means the vendor's 2, 4, 8, 16, 32 s and 5 s.
	CallbackRetryBase time.Duration
	CallbackTimeout   time.Duration
	// Meter measures callback delivery, room messages and the NATS
	// connection; no metrics if nil.
	Meter  metric.MeterProvider
	Logger *slog.Logger
	Now    func() time.Time
}

// Server implements the client and business-server room APIs.
type Server struct {
	roomv1.UnimplementedRoomServiceServer
	cfg Config
	log *slog.Logger
	ctx context.Context
	// stop ends every hub and background task.
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	hubs     map[roomKey]*hub
	limiters map[roomKey]*roomLimits
	msgs     *relay

	// commit batches session transactions (commit.go); sess holds session
	// leases and the sessions logged in here (session.go); metas the rooms'
	// meta as last seen (login.go).
	commit *committer
	sess   *sessions
	metas  metaCache
	// targets caches the apps' callback settings (lifecycle.go); nil
	// without a lease (no deliverer here).
	targets *targets
	// writes is the revision of this replica's last write to each room:
	// where a cache read must have caught up to (cache.go).
	writes roomWrites
}

type roomKey struct {
	app  uint32
	room string
}

type roomLimits struct {
	login, message *rate.Limiter
}

// member is the value of a room user key.
type member struct {
	UserID        string `json:"user_id"`
	UserName      string `json:"user_name"`
	SessionID     string `json:"session_id"`
	RoomSessionID string `json:"room_session_id,omitempty"`
	LoginTimeMs   int64  `json:"login_time_ms"`
	TokenExpire   int64  `json:"token_expire"`
	// Left marks a member on its way out, with why; the key is deleted
	// right after. It is how watchers learn the reason. Reason is the
	// vendor's room_logout reason (callback.Logout*), what the callback
	// carries; room events carry its callback.LeaveReason.
	Left   bool         `json:"left,omitempty"`
	Reason int          `json:"reason,omitempty"`
	Code   errcode.Code `json:"code,omitempty"`
	// Lease is the key's lease as the watch saw it (not stored in the
	// value): a cache read checks it against the session's.
	Lease int64 `json:"-"`
	// pub is the member as clients see it, built once by the hub and
	// shared by every snapshot and update that lists it (read only).
	pub *roomv1.User
}

// public is m as clients see it.
func (m *member) public() *roomv1.User {
	if m.pub == nil {
		m.pub = &roomv1.User{UserId: m.UserID, UserName: m.UserName}
	}
	return m.pub
}

// memberOf is the member value of a live session: the one builder of it.
func memberOf(rec *keys.SessionRecord) member {
	return member{UserID: rec.UserID, UserName: rec.UserName, SessionID: rec.SessionID, RoomSessionID: rec.RoomSessionID,
		LoginTimeMs: rec.LoginTimeMs, TokenExpire: rec.TokenExpire}
}

// New returns a room service. Close stops its hubs.
func New(cfg Config) *Server {
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.LoginRate <= 0 {
		cfg.LoginRate = DefaultLoginRate
	}
	if cfg.MessageRate <= 0 {
		cfg.MessageRate = DefaultMessageRate
	}
	if cfg.OnlineCountInterval <= 0 {
		cfg.OnlineCountInterval = DefaultOnlineCountInterval
	}
	if cfg.UserBatchWindow <= 0 {
		cfg.UserBatchWindow = DefaultUserBatchWindow
	}
	switch {
	case cfg.EmptyRoomLinger == 0:
		cfg.EmptyRoomLinger = DefaultEmptyRoomLinger
	case cfg.EmptyRoomLinger < 0:
		cfg.EmptyRoomLinger = 0
	}
	if cfg.HubLinger <= 0 {
		cfg.HubLinger = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger, ctx: ctx, stop: stop,
		hubs: map[roomKey]*hub{}, limiters: map[roomKey]*roomLimits{},
		msgs: newRelay(cfg), commit: newCommitter(cfg.Etcd)}
	s.sess = newSessions(ctx, &s.wg, cfg.Logger, cfg.Etcd, cfg.SessionTimeout, s.heartbeatInterval())
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.commit.run(ctx) }()
	if cfg.Lease != nil {
		tg := &targets{auth: cfg.Auth, ttl: 5 * time.Second, m: map[uint32]targetEntry{}}
		s.targets = tg
		d := callback.New(callback.Config{Etcd: cfg.Etcd, Lease: cfg.Lease, Target: tg.lookup,
			RetryBase: cfg.CallbackRetryBase, Timeout: cfg.CallbackTimeout, Meter: cfg.Meter, Logger: cfg.Logger, Now: cfg.Now})
		s.wg.Add(2)
		go func() { defer s.wg.Done(); s.runLifecycle(ctx) }()
		go func() { defer s.wg.Done(); d.Run(ctx) }()
	}
	return s
}

// Close stops every hub. Sessions stay in etcd: clients resume them on
// another replica.
func (s *Server) Close() {
	s.stop()
	s.wg.Wait()
}

func (s *Server) limits(k roomKey) *roomLimits {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.limiters[k]
	if !ok {
		l = &roomLimits{
			login:   rate.NewLimiter(rate.Limit(s.cfg.LoginRate), int(s.cfg.LoginRate)),
			message: rate.NewLimiter(rate.Limit(s.cfg.MessageRate), int(s.cfg.MessageRate)),
		}
		// The map only grows with rooms that had logins on this replica;
		// forget them all when it gets large rather than track idleness.
		if len(s.limiters) > 100_000 {
			clear(s.limiters)
		}
		s.limiters[k] = l
	}
	return l
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 1
}
