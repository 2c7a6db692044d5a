package express

import (
	"crypto/tls"
	"strconv"
	"time"
)

// Scenario is the room scenario of an engine; OnAir records it but treats
// every scenario alike.
type Scenario int

// Scenarios with the vendor's values.
const (
	ScenarioDefault      Scenario = 3
	ScenarioStandardLive Scenario = 6
	ScenarioHighQuality  Scenario = 7
)

// EngineProfile says which app the engine belongs to and where OnAir is.
type EngineProfile struct {
	AppID uint32
	// Server is the gRPC address of OnAir, or several comma-separated
	// addresses tried in order: when one goes away the engine moves on to
	// the next and resumes where it was.
	Server   string
	Scenario Scenario
	// ReconnectTimeout is how long the engine tries to get a broken room
	// connection back before giving up with ReconnectFailed (1002053). The
	// vendor's is 20 minutes, which is the default.
	ReconnectTimeout time.Duration
	// TLS, when set, secures every connection the engine makes: to Server
	// and to the media edges it is sent to (a deployment serving
	// --tls-cert). Nil: plaintext, as onair dev and onair cluster serve.
	TLS *tls.Config
}

// User is a user in a room.
type User struct {
	UserID   string
	UserName string
}

// RoomConfig configures a login.
type RoomConfig struct {
	// MaxMemberCount caps the room; 0 means no limit.
	MaxMemberCount uint32
	// IsUserStatusNotify asks for OnRoomUserUpdate callbacks.
	IsUserStatusNotify bool
	// Token is the Token04 token of the user.
	Token string
}

// RoomStateChangedReason has the vendor's values.
type RoomStateChangedReason int

// Room state changes.
const (
	RoomStateChangedReasonLogining        RoomStateChangedReason = 0
	RoomStateChangedReasonLogined         RoomStateChangedReason = 1
	RoomStateChangedReasonLoginFailed     RoomStateChangedReason = 2
	RoomStateChangedReasonReconnecting    RoomStateChangedReason = 3
	RoomStateChangedReasonReconnected     RoomStateChangedReason = 4
	RoomStateChangedReasonReconnectFailed RoomStateChangedReason = 5
	RoomStateChangedReasonKickOut         RoomStateChangedReason = 6
	RoomStateChangedReasonLogout          RoomStateChangedReason = 7
	RoomStateChangedReasonLogoutFailed    RoomStateChangedReason = 8
)

var reasonNames = [...]string{"Logining", "Logined", "LoginFailed", "Reconnecting", "Reconnected", "ReconnectFailed", "KickOut", "Logout", "LogoutFailed"}

func (r RoomStateChangedReason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "RoomStateChangedReason(" + strconv.Itoa(int(r)) + ")"
}

// UpdateType has the vendor's values (Add=0, Delete=1), not the wire's:
// streamv1.UpdateType keeps 0 for "not set", and the SDK maps.
type UpdateType int

// Update types.
const (
	UpdateTypeAdd    UpdateType = 0
	UpdateTypeDelete UpdateType = 1
)

func (u UpdateType) String() string {
	if u == UpdateTypeAdd {
		return "Add"
	}
	return "Delete"
}

// Stream is a stream published in a room.
type Stream struct {
	User      User
	StreamID  string
	ExtraInfo string
}

// RoomExtraInfo is one key of a room's extra info.
type RoomExtraInfo struct {
	Key        string
	Value      string
	UpdateUser User
	UpdateTime time.Time
}

// BroadcastMessageInfo is a received broadcast message.
type BroadcastMessageInfo struct {
	Message   string
	MessageID string
	SendTime  time.Time
	FromUser  User
}
