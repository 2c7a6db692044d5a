package room

// User lists: the members of a room, a page at a time.

import (
	"context"
	"encoding/json"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// ListUsers pages through the session's room.
func (s *Server) ListUsers(ctx context.Context, req *roomv1.ListUsersRequest) (*roomv1.ListUsersResponse, error) {
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	size := req.GetPageSize()
	if size == 0 || size > 500 {
		size = 100
	}
	// From the replica's watch cache when it holds the room (cache.go).
	if h := s.currentHub(ctx, roomKey{rec.AppID, rec.RoomID}); h != nil {
		users, next, count := h.listUsers(size, req.GetPageToken())
		return &roomv1.ListUsersResponse{Users: users, NextPageToken: next, OnlineCount: count}, nil
	}
	users, next, count, err := s.listUsers(ctx, rec.AppID, rec.RoomID, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &roomv1.ListUsersResponse{Users: users, NextPageToken: next, OnlineCount: count}, nil
}

func (s *Server) listUsers(ctx context.Context, appID uint32, roomID string, size uint32, after string) ([]*roomv1.User, string, uint32, error) {
	if size == 0 || size > 500 {
		size = 100
	}
	prefix := keys.RoomUsers(appID, roomID)
	from := prefix
	if after != "" {
		from = prefix + after + "\x00"
	}
	resp, err := s.cfg.Etcd.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(size)+1))
	if err != nil {
		return nil, "", 0, errcode.Unavailable(err)
	}
	cnt, err := s.cfg.Etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(resp.Header.Revision))
	if err != nil {
		return nil, "", 0, errcode.Unavailable(err)
	}
	var users []*roomv1.User
	next := ""
	for i, kv := range resp.Kvs {
		if i == int(size) {
			next = users[len(users)-1].UserId
			break
		}
		var m member
		if json.Unmarshal(kv.Value, &m) != nil || m.Left {
			continue
		}
		users = append(users, &roomv1.User{UserId: m.UserID, UserName: m.UserName})
	}
	return users, next, uint32(cnt.Count), nil
}
