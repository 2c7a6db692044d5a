package token04

import (
	"encoding/json"
	"slices"

	"github.com/onair-dev/onair/errcode"
)

// Privilege keys and values of the privilege payload, as the vendor
// numbers them.
const (
	keyLogin   = "1"
	keyPublish = "2"
	granted    = 1
	denied     = 0
)

// Privilege is what a token allows, written into its payload field.
type Privilege struct {
	// RoomID is the one room the token is for; "" allows any room.
	RoomID string
	// Login allows logging into the room.
	Login bool
	// Publish allows publishing streams in the room. Publishing also needs
	// Login: a user who may not enter a room may not publish into it.
	Publish bool
	// StreamIDs lists the stream IDs the token may publish. Nil allows any
	// stream ID; a non-nil empty slice allows none.
	StreamIDs []string
}

// privilegeJSON is the wire form of a Privilege, fields in the vendor's
// order.
type privilegeJSON struct {
	RoomID    string `json:"room_id"`
	Privilege struct {
		Login   int `json:"1"`
		Publish int `json:"2"`
	} `json:"privilege"`
	StreamIDList []string `json:"stream_id_list"`
}

// Payload returns the privilege payload JSON that goes into a token's
// payload field, such as
//
//	{"room_id":"r1","privilege":{"1":1,"2":0},"stream_id_list":null}
//
// It is exported for business servers that mint with another generator
// and only want the payload string.
func (p Privilege) Payload() (string, error) {
	var j privilegeJSON
	j.RoomID = p.RoomID
	j.Privilege.Login = flag(p.Login)
	j.Privilege.Publish = flag(p.Publish)
	j.StreamIDList = p.StreamIDs
	b, err := json.Marshal(j)
	if err != nil {
		return "", errcode.Newf(errcode.InvalidParameter, "token04: encoding privilege payload: %v", err)
	}
	return string(b), nil
}

func flag(b bool) int {
	if b {
		return granted
	}
	return denied
}

// parsePayload parses a non-empty privilege payload with the same strict
// rules as the token plaintext. Absent or null members grant (see the
// package documentation); a privilege value other than 0 or 1 is refused
// rather than guessed at, since guessing wrong would grant. Privilege keys
// other than "1" and "2" are ignored so that privileges the vendor adds
// later do not break verification.
func parsePayload(s string) (*Privilege, bool) {
	obj, ok := jsonObject([]byte(s))
	if !ok {
		return nil, false
	}
	p := &Privilege{Login: true, Publish: true}
	if !optional(obj, "room_id", &p.RoomID) || !optional(obj, "stream_id_list", &p.StreamIDs) {
		return nil, false
	}
	if raw, ok := obj["privilege"]; ok && !isNull(raw) {
		privs, ok := jsonObject(raw)
		if !ok {
			return nil, false
		}
		if !privilegeValue(privs, keyLogin, &p.Login) || !privilegeValue(privs, keyPublish, &p.Publish) {
			return nil, false
		}
	}
	return p, true
}

// privilegeValue sets *v from member key of privs if it is present; it
// must then be 0 or 1.
func privilegeValue(privs map[string]json.RawMessage, key string, v *bool) bool {
	raw, ok := privs[key]
	if !ok {
		return true
	}
	var n int
	if isNull(raw) || json.Unmarshal(raw, &n) != nil || (n != granted && n != denied) {
		return false
	}
	*v = n == granted
	return true
}

// allowsRoom reports whether p's room restriction admits roomID.
func (p *Privilege) allowsRoom(roomID string) bool {
	return p.RoomID == "" || p.RoomID == roomID
}

// AllowsLogin reports whether the token lets its user log into roomID. A
// basic token allows every room.
func (c *Claims) AllowsLogin(roomID string) bool {
	if c == nil {
		return false
	}
	p := c.Privilege
	return p == nil || (p.Login && p.allowsRoom(roomID))
}

// AllowsPublish reports whether the token lets its user publish streamID
// in roomID. It requires the login privilege too, since publishing happens
// inside a room the user must be allowed into. A basic token allows every
// stream.
func (c *Claims) AllowsPublish(roomID, streamID string) bool {
	if !c.AllowsLogin(roomID) {
		return false
	}
	p := c.Privilege
	return p == nil || (p.Publish && (p.StreamIDs == nil || slices.Contains(p.StreamIDs, streamID)))
}

// CheckLogin is AllowsLogin as an error for services to return: nil, or
// LoginAuthFailed (1002033), the code the vendor reports for a token whose
// privileges refuse the login.
func (c *Claims) CheckLogin(roomID string) error {
	if c.AllowsLogin(roomID) {
		return nil
	}
	return errcode.New(errcode.LoginAuthFailed, "token04: the token does not allow logging into this room; mint it with the login privilege for this room")
}

// CheckPublish is AllowsPublish as an error for services to return: nil,
// or PublishAuthError (1003072).
func (c *Claims) CheckPublish(roomID, streamID string) error {
	if c.AllowsPublish(roomID, streamID) {
		return nil
	}
	return errcode.New(errcode.PublishAuthError, "token04: the token does not allow publishing this stream in this room; mint it with the publish privilege and this stream ID")
}
