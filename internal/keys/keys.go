// Package keys is the etcd key layout shared by the services. Everything
// about one room lives under its room prefix, so one watch of that prefix
// sees every change to the room in revision order.
//
//	/onair/rooms/{app}/{room}/users/{user}      member (room service; session lease)
//	/onair/rooms/{app}/{room}/streams/{stream}  stream (stream registry; owner lease)
//	/onair/rooms/{app}/{room}/info/{key}        room extra info (room service)
//	/onair/rooms/{app}/{room}/msgs/{id}         room message (room service; short lease)
//	/onair/rooms/{app}/{room}/meta              the room exists: created by its first login, removed when it closes
//	/onair/streams/{app}/{stream}               stream by ID: uniqueness per AppID
//	/onair/sessions/{app}/{user}                session by user: uniqueness per AppID
//	/onair/session-ids/{session}                session by ID
//	/onair/callbacks/outbox/{app}/{room}/{id}   callback waiting for delivery (written with the change it reports)
//	/onair/callbacks/claims/{app}/{room}        which room replica delivers a room's callbacks (its lease)
//	/onair/callbacks/failed/{app}/{ms}-{id}     callback given up on (kept for a while, listed by the server API)
//	/onair/lifecycle/cursor                     how far lease expiries have been turned into callbacks
//	/onair/lifecycle/leader                     which room replica does that (its lease)
package keys

import (
	"strconv"
	"strings"
)

func app(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// Room is the prefix of everything about a room.
func Room(appID uint32, roomID string) string {
	return "/onair/rooms/" + app(appID) + "/" + roomID + "/"
}

// RoomUsers is the prefix of a room's members.
func RoomUsers(appID uint32, roomID string) string { return Room(appID, roomID) + "users/" }

// RoomUser is one member of a room.
func RoomUser(appID uint32, roomID, userID string) string { return RoomUsers(appID, roomID) + userID }

// RoomStreams is the prefix of a room's streams.
func RoomStreams(appID uint32, roomID string) string { return Room(appID, roomID) + "streams/" }

// RoomStream is one stream in a room.
func RoomStream(appID uint32, roomID, streamID string) string {
	return RoomStreams(appID, roomID) + streamID
}

// RoomInfo is the prefix of a room's extra info.
func RoomInfo(appID uint32, roomID string) string { return Room(appID, roomID) + "info/" }

// RoomMessages is the prefix of a room's in-flight messages.
func RoomMessages(appID uint32, roomID string) string { return Room(appID, roomID) + "msgs/" }

// RoomMeta marks that a room exists (see the room service's lifecycle).
func RoomMeta(appID uint32, roomID string) string { return Room(appID, roomID) + "meta" }

// Rooms is the prefix of every room of every app.
const Rooms = "/onair/rooms/"

// SplitRoom splits a key under Rooms into its app, room and the rest after
// the room prefix ("users/u1", "meta").
func SplitRoom(key string) (appID uint32, roomID, rest string, ok bool) {
	s, ok := strings.CutPrefix(key, Rooms)
	if !ok {
		return 0, "", "", false
	}
	a, s, ok := strings.Cut(s, "/")
	if !ok {
		return 0, "", "", false
	}
	id, err := strconv.ParseUint(a, 10, 32)
	if err != nil {
		return 0, "", "", false
	}
	roomID, rest, ok = strings.Cut(s, "/")
	return uint32(id), roomID, rest, ok
}

// CallbackOutbox is the prefix of every callback waiting for delivery.
const CallbackOutbox = "/onair/callbacks/outbox/"

// CallbackRoomOutbox is the prefix of a room's waiting callbacks.
func CallbackRoomOutbox(appID uint32, roomID string) string {
	return CallbackOutbox + app(appID) + "/" + roomID + "/"
}

// CallbackClaims is the prefix of the deliverers' room claims.
const CallbackClaims = "/onair/callbacks/claims/"

// CallbackClaim is the claim of a room's callbacks.
func CallbackClaim(appID uint32, roomID string) string {
	return CallbackClaims + app(appID) + "/" + roomID
}

// CallbackFailed is the prefix of an app's failed callbacks.
func CallbackFailed(appID uint32) string { return "/onair/callbacks/failed/" + app(appID) + "/" }

// Lifecycle keys: the cursor of the lease-expiry watcher and its leader.
const (
	LifecycleCursor = "/onair/lifecycle/cursor"
	LifecycleLeader = "/onair/lifecycle/leader"
)

// Stream is a stream by ID.
func Stream(appID uint32, streamID string) string {
	return "/onair/streams/" + app(appID) + "/" + streamID
}

// Session is a user's session in an app.
func Session(appID uint32, userID string) string {
	return "/onair/sessions/" + app(appID) + "/" + userID
}

// SessionID is a session by its ID.
func SessionID(id string) string { return "/onair/session-ids/" + id }

// LeaseFence is a session lease's fence: a key under the lease itself that
// every login on the lease rewrites and compares (services/room session.go).
func LeaseFence(lease int64) string { return "/onair/lease-fences/" + strconv.FormatInt(lease, 16) }

// Kind is what a key under a room prefix is.
type Kind int

// Kinds of room keys.
const (
	KindUnknown Kind = iota
	KindUser
	KindStream
	KindInfo
	KindMessage
	KindMeta
)

// Parse splits a key under roomPrefix into its kind and name.
func Parse(roomPrefix, key string) (Kind, string) {
	rest, ok := strings.CutPrefix(key, roomPrefix)
	if !ok {
		return KindUnknown, ""
	}
	if rest == "meta" {
		return KindMeta, ""
	}
	kind, name, ok := strings.Cut(rest, "/")
	if !ok {
		return KindUnknown, ""
	}
	switch kind {
	case "users":
		return KindUser, name
	case "streams":
		return KindStream, name
	case "info":
		return KindInfo, name
	case "msgs":
		return KindMessage, name
	}
	return KindUnknown, ""
}

// SessionRecord is the value of a Session and SessionID key.
type SessionRecord struct {
	SessionID     string `json:"session_id"`
	RoomSessionID string `json:"room_session_id"`
	AppID         uint32 `json:"app_id"`
	RoomID        string `json:"room_id"`
	UserID        string `json:"user_id"`
	UserName      string `json:"user_name"`
	Lease         int64  `json:"lease"`
	TokenExpire   int64  `json:"token_expire"`
	UserNotify    bool   `json:"user_notify"`
	LoginTimeMs   int64  `json:"login_time_ms"`
	// AttemptID is the client's ID of the login that made the session: a
	// retry of that login finds the session by it.
	AttemptID string `json:"attempt_id,omitempty"`
}
