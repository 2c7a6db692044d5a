// Package ids validates room, user and stream IDs with the vendor's rules
// and error codes.
package ids

import "github.com/onair-dev/onair/errcode"

// roomUserChars is the character set of room and user IDs: digits, letters
// and ~!@#$%^&*()_+=-`;',.<>
var roomUserChars = charset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ~!@#$%^&*()_+=-`;',.<>")

var streamChars = charset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")

func charset(s string) (t [256]bool) {
	for i := 0; i < len(s); i++ {
		t[s[i]] = true
	}
	return t
}

func check(s string, max int, set *[256]bool, empty, bad, long errcode.Code, what string) error {
	switch {
	case s == "":
		return errcode.Newf(empty, "%s is empty", what)
	case len(s) > max:
		return errcode.Newf(long, "%s is longer than %d bytes", what, max)
	}
	for i := 0; i < len(s); i++ {
		if !set[s[i]] {
			return errcode.Newf(bad, "%s contains %q, which is not allowed", what, s[i])
		}
	}
	return nil
}

// Room checks a room ID: 1..127 bytes of the room/user character set.
func Room(id string) error {
	return check(id, 127, &roomUserChars, errcode.RoomIDEmpty, errcode.RoomIDInvalid, errcode.RoomIDTooLong, "room ID")
}

// User checks a user ID: 1..63 bytes of the room/user character set.
func User(id string) error {
	return check(id, 63, &roomUserChars, errcode.UserIDEmpty, errcode.UserIDInvalid, errcode.UserIDTooLong, "user ID")
}

// UserName checks a user name: 1..255 bytes, any characters.
func UserName(name string) error {
	switch {
	case name == "":
		return errcode.New(errcode.UserNameEmpty, "user name is empty")
	case len(name) > 255:
		return errcode.New(errcode.UserNameTooLong, "user name is longer than 255 bytes")
	}
	return nil
}

// Stream checks a stream ID: 1..255 bytes of digits, letters, '-' and '_'.
func Stream(id string) error {
	return check(id, 255, &streamChars, errcode.StreamIDInvalid, errcode.StreamIDInvalid, errcode.StreamIDTooLong, "stream ID")
}
