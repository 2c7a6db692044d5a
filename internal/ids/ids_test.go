package ids

import (
	"strings"
	"testing"

	"github.com/onair-dev/onair/errcode"
)

func TestIDs(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) error
		id    string
		want  errcode.Code
	}{
		{"room ok", Room, "room-1~!@#$%^&*()_+=-`;',.<>", 0},
		{"room empty", Room, "", errcode.RoomIDEmpty},
		{"room bad char", Room, "a/b", errcode.RoomIDInvalid},
		{"room space", Room, "a b", errcode.RoomIDInvalid},
		{"room 127", Room, strings.Repeat("r", 127), 0},
		{"room 128", Room, strings.Repeat("r", 128), errcode.RoomIDTooLong},
		{"user ok", User, "user_1", 0},
		{"user empty", User, "", errcode.UserIDEmpty},
		{"user bad", User, "ü", errcode.UserIDInvalid},
		{"user 64", User, strings.Repeat("u", 64), errcode.UserIDTooLong},
		{"name ok", UserName, "Ünïcode name", 0},
		{"name empty", UserName, "", errcode.UserNameEmpty},
		{"name long", UserName, strings.Repeat("n", 256), errcode.UserNameTooLong},
		{"stream ok", Stream, "stream-1_a", 0},
		{"stream dot", Stream, "s.1", errcode.StreamIDInvalid},
		{"stream 256", Stream, strings.Repeat("s", 256), errcode.StreamIDTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errcode.Of(tt.check(tt.id)); got != tt.want {
				t.Errorf("code = %d, want %d", got, tt.want)
			}
		})
	}
}
