package callback

import (
	"testing"

	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// A room_logout callback carries the vendor's reason (0 logout ... 4 token
// expired), whatever number the room events use.
func TestLogoutReasonIsTheVendors(t *testing.T) {
	tests := []struct {
		leave  roomv1.UserLeaveReason
		vendor int
	}{
		{roomv1.UserLeaveReason_USER_LEAVE_REASON_LOGOUT, 0},
		{roomv1.UserLeaveReason_USER_LEAVE_REASON_HEARTBEAT_TIMEOUT, 1},
		{roomv1.UserLeaveReason_USER_LEAVE_REASON_DISCONNECT, 2},
		{roomv1.UserLeaveReason_USER_LEAVE_REASON_KICKED, 3},
		{roomv1.UserLeaveReason_USER_LEAVE_REASON_TOKEN_EXPIRED, 4},
	}
	for _, tt := range tests {
		if got := LogoutReason(tt.leave); got != tt.vendor {
			t.Errorf("LogoutReason(%v) = %d, want %d", tt.leave, got, tt.vendor)
		}
		if got := LeaveReason(tt.vendor); got != tt.leave {
			t.Errorf("LeaveReason(%d) = %v, want %v", tt.vendor, got, tt.leave)
		}
	}
	// Every leave reason the proto has is in the table.
	if n := len(roomv1.UserLeaveReason_name) - 1; n != len(tests) {
		t.Errorf("the proto has %d leave reasons besides UNSPECIFIED; the table %d", n, len(tests))
	}
	if got := LogoutReason(roomv1.UserLeaveReason_USER_LEAVE_REASON_UNSPECIFIED); got != LogoutNormal {
		t.Errorf("LogoutReason(UNSPECIFIED) = %d, want %d (logout)", got, LogoutNormal)
	}
}
