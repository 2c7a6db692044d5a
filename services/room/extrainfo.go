package room

// Room extra info: one etcd key per info key, under the room prefix, so
// the room watch orders it with everything else.

import (
	"context"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// SetRoomExtraInfo sets one key of the room's extra info.
func (s *Server) SetRoomExtraInfo(ctx context.Context, req *roomv1.SetRoomExtraInfoRequest) (*roomv1.SetRoomExtraInfoResponse, error) {
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetKey() == "":
		return nil, errcode.New(errcode.InvalidParameter, "room extra info key is empty")
	case len(req.GetKey()) >= maxExtraInfoKey:
		return nil, errcode.New(errcode.RoomExtraInfoTooLong, "room extra info key must be under 128 bytes")
	case len(req.GetValue()) >= maxExtraInfoValue:
		return nil, errcode.New(errcode.RoomExtraInfoTooLong, "room extra info value must be under 4096 bytes")
	}
	info := &roomv1.RoomExtraInfo{Key: req.GetKey(), Value: req.GetValue(),
		UpdateUser: &roomv1.User{UserId: rec.UserID, UserName: rec.UserName}, UpdateTimeMs: s.cfg.Now().UnixMilli()}
	b, _ := marshal(info)
	resp, err := s.cfg.Etcd.Put(ctx, keys.RoomInfo(rec.AppID, rec.RoomID)+req.GetKey(), string(b))
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	s.writes.wrote(roomKey{rec.AppID, rec.RoomID}, resp.Header.Revision)
	return &roomv1.SetRoomExtraInfoResponse{Revision: resp.Header.Revision}, nil
}
