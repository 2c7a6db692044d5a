package express

// EventHandler receives an engine's callbacks. They are called in order, one
// at a time, on a goroutine of the engine's own; a handler that blocks holds
// up the engine's later callbacks, not its network work. Embed
// BaseEventHandler to implement only what you need.
type EventHandler interface {
	// OnRoomStateChanged reports login, reconnection, kick-out and logout.
	// On Logined and Reconnected extendedData is {"room_session_id":"..."}.
	OnRoomStateChanged(reason RoomStateChangedReason, errorCode int, extendedData string, roomID string)
	// OnRoomUserUpdate reports other users joining or leaving. The first
	// call after login lists who is already there. Only with
	// RoomConfig.IsUserStatusNotify.
	OnRoomUserUpdate(updateType UpdateType, users []User, roomID string)
	// OnRoomOnlineUserCountUpdate reports the number of users in the room.
	OnRoomOnlineUserCountUpdate(count int, roomID string)
	// OnRoomStreamUpdate reports other users' streams starting or ending.
	// The first call after login lists what is already published. For
	// Delete, extendedData is {"stream_delete_reason":[{"stream_id":..,"code":..}]}.
	OnRoomStreamUpdate(updateType UpdateType, streams []Stream, extendedData string, roomID string)
	// OnRoomStreamExtraInfoUpdate reports changed stream extra info.
	OnRoomStreamExtraInfoUpdate(streams []Stream, roomID string)
	// OnRoomExtraInfoUpdate reports room extra info set by others.
	OnRoomExtraInfoUpdate(infos []RoomExtraInfo, roomID string)
	// OnIMRecvBroadcastMessage delivers broadcast messages of others.
	OnIMRecvBroadcastMessage(messages []BroadcastMessageInfo, roomID string)
	// OnIMRecvCustomCommand delivers a custom command sent to this user.
	OnIMRecvCustomCommand(command string, fromUser User, roomID string)
	// OnRoomTokenWillExpire warns 30 seconds before the token expires; call
	// RenewToken.
	OnRoomTokenWillExpire(remainTimeInSecond int, roomID string)

	// OnPublisherStateUpdate reports a published stream's state: requesting
	// (also while it reconnects, with 1002051), publishing, or stopped
	// (with the error code when it failed).
	OnPublisherStateUpdate(state PublisherState, errorCode int, extendedData string, streamID string)
	// OnPlayerStateUpdate reports a played stream's state the same way;
	// NoPlay with 1004002 when the stream ended.
	OnPlayerStateUpdate(state PlayerState, errorCode int, extendedData string, streamID string)
	// OnPlayerRecvVideoFirstFrame reports the first decodable video frame of
	// a StartPlayingStream.
	OnPlayerRecvVideoFirstFrame(streamID string)
	// OnPublisherQualityUpdate reports a published stream's quality every 3 s.
	OnPublisherQualityUpdate(quality PublishStreamQuality, streamID string)
	// OnPlayerQualityUpdate reports a played stream's quality every 3 s.
	OnPlayerQualityUpdate(quality PlayStreamQuality, streamID string)
}

// BaseEventHandler implements EventHandler with callbacks that do nothing.
type BaseEventHandler struct{}

// OnRoomStateChanged does nothing.
func (BaseEventHandler) OnRoomStateChanged(RoomStateChangedReason, int, string, string) {}

// OnRoomUserUpdate does nothing.
func (BaseEventHandler) OnRoomUserUpdate(UpdateType, []User, string) {}

// OnRoomOnlineUserCountUpdate does nothing.
func (BaseEventHandler) OnRoomOnlineUserCountUpdate(int, string) {}

// OnRoomStreamUpdate does nothing.
func (BaseEventHandler) OnRoomStreamUpdate(UpdateType, []Stream, string, string) {}

// OnRoomStreamExtraInfoUpdate does nothing.
func (BaseEventHandler) OnRoomStreamExtraInfoUpdate([]Stream, string) {}

// OnRoomExtraInfoUpdate does nothing.
func (BaseEventHandler) OnRoomExtraInfoUpdate([]RoomExtraInfo, string) {}

// OnIMRecvBroadcastMessage does nothing.
func (BaseEventHandler) OnIMRecvBroadcastMessage([]BroadcastMessageInfo, string) {}

// OnIMRecvCustomCommand does nothing.
func (BaseEventHandler) OnIMRecvCustomCommand(string, User, string) {}

// OnRoomTokenWillExpire does nothing.
func (BaseEventHandler) OnRoomTokenWillExpire(int, string) {}

// OnPublisherStateUpdate does nothing.
func (BaseEventHandler) OnPublisherStateUpdate(PublisherState, int, string, string) {}

// OnPlayerStateUpdate does nothing.
func (BaseEventHandler) OnPlayerStateUpdate(PlayerState, int, string, string) {}

// OnPlayerRecvVideoFirstFrame does nothing.
func (BaseEventHandler) OnPlayerRecvVideoFirstFrame(string) {}

// OnPublisherQualityUpdate does nothing.
func (BaseEventHandler) OnPublisherQualityUpdate(PublishStreamQuality, string) {}

// OnPlayerQualityUpdate does nothing.
func (BaseEventHandler) OnPlayerQualityUpdate(PlayStreamQuality, string) {}
