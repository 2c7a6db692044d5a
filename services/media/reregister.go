package media

import (
	"context"
	"fmt"

	"github.com/onair-dev/onair/errcode"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// Reregister puts every stream the edge publishes under lease, the edge's
// fresh lease after it lost the old one (a stall, an etcd outage): the
// publisher is still here and still sending, so the stream is still true.
// A stream the registry now refuses (its ID was taken meanwhile) ends its
// publisher with the registry's error. Other errors are returned, so the
// caller tries again; streams already under lease are left alone.
func (s *Server) Reregister(ctx context.Context, lease int64) error {
	s.mu.Lock()
	origins := make([]*stream, 0, len(s.origins))
	for _, o := range s.origins {
		origins = append(origins, o)
	}
	s.mu.Unlock()
	for _, o := range origins {
		o.mu.Lock()
		due := o.registered && o.lease != lease
		userName, extraInfo := o.userName, o.extraInfo
		o.mu.Unlock()
		if !due {
			continue
		}
		// No token: the edge speaks for a publisher it already admitted,
		// whose token may have expired since.
		_, err := s.cfg.Streams.RegisterStream(ctx, &streamv1.RegisterStreamRequest{
			AppId: o.key.App, RoomId: o.roomID, StreamId: o.key.Stream, UserId: o.userID, UserName: userName,
			ExtraInfo: extraInfo, EdgeId: s.cfg.EdgeID, EdgeAddr: s.cfg.EdgeAddr, OwnerLease: lease,
		})
		switch code := errcode.Of(err); {
		case err == nil:
			o.mu.Lock()
			o.lease = lease
			o.mu.Unlock()
		case code != 0 && code != errcode.ServiceUnavailable:
			s.log.Warn("media: stream refused after the edge's lease was lost", "stream", o.key.Stream, "err", err)
			pub := o.publisher()
			pub.setFinal()
			pub.finish(mediav1.SessionEvent_STATE_FAILED, int32(code), fmt.Sprintf("the stream could not be registered again: %v", err))
		default:
			return fmt.Errorf("media: register stream %q again: %w", o.key.Stream, err)
		}
	}
	return nil
}
