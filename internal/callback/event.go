// Package callback is the business-server callback outbox and its delivery.
//
// A callback is written to etcd (the outbox, under keys.CallbackOutbox) in
// the same transaction as the change it reports, so it exists if and only if
// the change happened. Any room replica may deliver it: a replica claims a
// room's callbacks under its lease (keys.CallbackClaim), posts them to the
// app's callback_url one at a time in the order they were written, signed
// with the app's callback secret, and deletes each once the business server
// answers 2xx. A claim dies with its replica's lease, and another replica
// carries on where it stopped, so a callback is delivered at least once and
// a receiver deduplicates by event_id, which stays the same across retries.
//
// Changes that no transaction of ours makes (a session's or a media edge's
// lease expiring) are turned into callbacks by the room service's lifecycle
// watcher. It records how far it got in keys.LifecycleCursor, and a callback
// is delivered only once that cursor has passed it, so a heartbeat timeout
// is never reported after a change that happened later.
package callback

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// Callback event names, the vendor's.
const (
	RoomCreate   = "room_create"
	RoomClose    = "room_close"
	RoomLogin    = "room_login"
	RoomLogout   = "room_logout"
	StreamCreate = "stream_create"
	StreamClose  = "stream_close"
)

// room_logout reasons (the vendor's). roomv1.UserLeaveReason numbers them
// one higher, 0 being "not set" there; LogoutReason and LeaveReason convert.
const (
	LogoutNormal           = 0
	LogoutHeartbeatTimeout = 1
	LogoutDisconnect       = 2
	LogoutKicked           = 3
	LogoutTokenExpired     = 4
)

// room_close reasons (the vendor's).
const (
	CloseNormal           = 0
	CloseHeartbeatTimeout = 1
	CloseOffline          = 2
	CloseKicked           = 3
)

// LogoutReason is the vendor's room_logout reason of a leave reason: what a
// callback carries. An unset reason is a logout.
func LogoutReason(r roomv1.UserLeaveReason) int {
	switch r {
	case roomv1.UserLeaveReason_USER_LEAVE_REASON_HEARTBEAT_TIMEOUT:
		return LogoutHeartbeatTimeout
	case roomv1.UserLeaveReason_USER_LEAVE_REASON_DISCONNECT:
		return LogoutDisconnect
	case roomv1.UserLeaveReason_USER_LEAVE_REASON_KICKED:
		return LogoutKicked
	case roomv1.UserLeaveReason_USER_LEAVE_REASON_TOKEN_EXPIRED:
		return LogoutTokenExpired
	}
	return LogoutNormal
}

// LeaveReason is the leave reason of a vendor room_logout reason: what a
// room event carries. An unknown one is a logout.
func LeaveReason(logout int) roomv1.UserLeaveReason {
	switch logout {
	case LogoutHeartbeatTimeout:
		return roomv1.UserLeaveReason_USER_LEAVE_REASON_HEARTBEAT_TIMEOUT
	case LogoutDisconnect:
		return roomv1.UserLeaveReason_USER_LEAVE_REASON_DISCONNECT
	case LogoutKicked:
		return roomv1.UserLeaveReason_USER_LEAVE_REASON_KICKED
	case LogoutTokenExpired:
		return roomv1.UserLeaveReason_USER_LEAVE_REASON_TOKEN_EXPIRED
	}
	return roomv1.UserLeaveReason_USER_LEAVE_REASON_LOGOUT
}

// CloseReason is the room_close reason for a room whose last user left with
// the room_logout reason logout.
func CloseReason(logout int) int {
	switch logout {
	case LogoutHeartbeatTimeout:
		return CloseHeartbeatTimeout
	case LogoutDisconnect:
		return CloseOffline
	case LogoutKicked, LogoutTokenExpired:
		return CloseKicked
	}
	return CloseNormal
}

// Event is what a business server receives, less the signature fields that
// each attempt adds (timestamp, nonce, signature).
type Event struct {
	Event         string `json:"event"`
	AppID         uint32 `json:"app_id"`
	EventID       string `json:"event_id"`
	RoomID        string `json:"room_id"`
	RoomSessionID string `json:"room_session_id,omitempty"`
	UserID        string `json:"user_id,omitempty"`
	UserName      string `json:"user_name,omitempty"`
	StreamID      string `json:"stream_id,omitempty"`
	// Reason is the room_logout, room_close or stream_close reason (for
	// stream_close the stream delete reason: 1 stopped ... 6 removed by
	// server); 0 for the other events.
	Reason int `json:"reason"`
	// EventTimeMs is when OnAir recorded the change, in Unix milliseconds.
	EventTimeMs int64 `json:"event_time_ms"`
}

// Record is an outbox (or failed) entry: the event and its delivery state.
type Record struct {
	Event Event `json:"event"`
	// Rev is the etcd revision of the change the event reports when the
	// event was written after it (lease expiries); 0 means the record's own
	// create revision, the change's transaction.
	Rev int64 `json:"rev,omitempty"`
	// Seq orders events of one revision.
	Seq           int    `json:"seq"`
	Attempts      int    `json:"attempts,omitempty"`
	NextAttemptMs int64  `json:"next_attempt_ms,omitempty"`
	LastStatus    int    `json:"last_status,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	FailedMs      int64  `json:"failed_ms,omitempty"`

	// key and order are filled when a record is read from the outbox.
	key   string
	order int64
}

// NewEventID returns a fresh event ID: 32 hex characters.
func NewEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Ops returns the puts that write evs to the outbox, in order, as of now:
// add them to the transaction that makes the change they report.
func Ops(now time.Time, evs ...Event) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(evs))
	for i, ev := range evs {
		ops = append(ops, Put(now, ev, 0, i))
	}
	return ops
}

// Put returns the put of one outbox record: ev (its ID and time filled in if
// empty) reporting the change at revision rev (0: this transaction), seq-th
// of that revision.
func Put(now time.Time, ev Event, rev int64, seq int) clientv3.Op {
	if ev.EventID == "" {
		ev.EventID = NewEventID()
	}
	if ev.EventTimeMs == 0 {
		ev.EventTimeMs = now.UnixMilli()
	}
	b, _ := json.Marshal(Record{Event: ev, Rev: rev, Seq: seq})
	return clientv3.OpPut(keys.CallbackRoomOutbox(ev.AppID, ev.RoomID)+ev.EventID, string(b))
}

// Order is the etcd revision of the change a record read from the outbox
// reports: a room's callbacks are delivered in this order (then by Seq).
func (r *Record) Order() int64 { return r.order }

// Decode reads an outbox record from kv.
func Decode(kv *mvccpb.KeyValue) (*Record, error) {
	r := new(Record)
	if err := json.Unmarshal(kv.Value, r); err != nil {
		return nil, fmt.Errorf("callback: decode %s: %w", kv.Key, err)
	}
	r.key = string(kv.Key)
	r.order = r.Rev
	if r.order == 0 {
		r.order = kv.CreateRevision
	}
	return r, nil
}

// sortRecords puts a room's records in the order of the changes they report.
func sortRecords(rs []*Record) {
	slices.SortStableFunc(rs, func(a, b *Record) int {
		return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.Seq, b.Seq))
	})
}

// Cursor is how far the lifecycle watcher has turned etcd's history under
// keys.Rooms into callbacks: every event before revision Rev, and the first
// N events of Rev.
type Cursor struct {
	Rev int64
	N   int
}

func (c Cursor) String() string { return strconv.FormatInt(c.Rev, 10) + "/" + strconv.Itoa(c.N) }

// ParseCursor reads a Cursor written by String.
func ParseCursor(s string) (Cursor, error) {
	r, n, ok := strings.Cut(s, "/")
	rev, err1 := strconv.ParseInt(r, 10, 64)
	cnt, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil {
		return Cursor{}, fmt.Errorf("callback: bad lifecycle cursor %q", s)
	}
	return Cursor{Rev: rev, N: cnt}, nil
}

// Passed reports whether every change up to and including revision rev has
// been turned into callbacks.
func (c Cursor) Passed(rev int64) bool { return c.Rev > rev }
