package room

// An emptied room closes after a linger, not at once.
//
// Under a flash crowd's churn (users joining and leaving many small rooms)
// a room empties and fills again within a second, over and over. Closed at
// once, every such turn cost the room's close (its keys deleted, room_close
// written and delivered) and its creation by the next login (the meta
// written, room_create written and delivered): four outbox writes, two
// callbacks, two meta writes and the watch events of all of them, more
// than the logins and logouts themselves. LiveKit keeps an emptied room for
// a departure timeout (20 s by default) for the same reason. Here the
// lifecycle watcher, which closes rooms, schedules the close of a room
// that a departure may have emptied for EmptyRoomLinger later, and closes
// it then only if it is still empty: a room that fills again meanwhile
// keeps its life (its room session ID, no room_close and room_create), and
// room_close reaches the business server that much later.
//
// The schedule lives in the leading watcher's memory: a new leader starts
// by finding the rooms that are open and empty (its predecessor's schedule)
// and schedules them afresh. The closes due at one time share one read of
// their metas and one transaction, so a replica with many rooms emptying
// makes two etcd requests per tick, not two per room.

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/keys"
)

// DefaultEmptyRoomLinger is how long an emptied room stays open by
// default: longer than a churning room stays empty (its next login comes
// within a second under load), short enough that room_close follows the
// last user's departure closely.
const DefaultEmptyRoomLinger = 2 * time.Second

// maxClosesPerTxn bounds the rooms one close transaction closes: one
// top-level operation each, inside etcd's 128.
const maxClosesPerTxn = maxLifecycleOps

// closer is the leading watcher's schedule of room closes.
type closer struct {
	linger time.Duration
	tick   *time.Ticker
	at     map[roomKey]time.Time
}

func newCloser(linger time.Duration) *closer {
	// Ticks at a quarter of the linger: a close comes at most a quarter
	// late, and an idle watcher wakes four times per linger while any
	// close is pending.
	return &closer{linger: linger, tick: time.NewTicker(max(linger/4, 10*time.Millisecond)), at: map[roomKey]time.Time{}}
}

func (c *closer) stop() { c.tick.Stop() }

// schedule (re)schedules room k's close for a linger after now.
func (c *closer) schedule(k roomKey, now time.Time) { c.at[k] = now.Add(c.linger) }

// wake is when the watcher should look for due closes: nil when none is
// pending (or no linger).
func (c *closer) wake() <-chan time.Time {
	if c == nil || len(c.at) == 0 {
		return nil
	}
	return c.tick.C
}

// due takes up to maxClosesPerTxn rooms whose close is due at now.
func (c *closer) due(now time.Time) []roomKey {
	var out []roomKey
	for k, at := range c.at {
		if len(out) == maxClosesPerTxn {
			break
		}
		if !now.Before(at) {
			out = append(out, k)
			delete(c.at, k)
		}
	}
	return out
}

// closeDue closes the scheduled rooms whose linger is over and that are
// still empty. A room that is not empty is dropped from the schedule: its
// next departure schedules it again.
func (s *Server) closeDue(ctx context.Context, leading clientv3.Cmp, closing *closer) error {
	if closing == nil {
		return nil
	}
	now := s.cfg.Now()
	for {
		rooms := closing.due(now)
		if len(rooms) == 0 {
			return nil
		}
		reads := make([]clientv3.Op, len(rooms))
		for i, k := range rooms {
			reads[i] = clientv3.OpGet(keys.RoomMeta(k.app, k.room))
		}
		metas, err := s.cfg.Etcd.Txn(ctx).Then(reads...).Commit()
		if err != nil {
			closing.retry(rooms, now)
			return nil // etcd is away: the next tick tries again
		}
		var ops []clientv3.Op
		for i, k := range rooms {
			kvs := metas.Responses[i].GetResponseRange().GetKvs()
			if len(kvs) != 1 {
				continue // closed already
			}
			meta := new(roomMeta)
			if err := json.Unmarshal(kvs[0].Value, meta); err != nil {
				return err
			}
			empty, closeOps := closeRoomOps(now, k.app, k.room, meta, kvs[0].ModRevision, -1)
			ops = append(ops, clientv3.OpTxn(empty, closeOps, nil))
		}
		if len(ops) == 0 {
			continue
		}
		resp, err := s.cfg.Etcd.Txn(ctx).If(leading).Then(ops...).Commit()
		switch {
		case err != nil:
			closing.retry(rooms, now)
			return nil
		case !resp.Succeeded:
			return errNotLeading
		}
	}
}

// retry schedules rooms whose close could not be tried for the next tick.
func (c *closer) retry(rooms []roomKey, now time.Time) {
	for _, k := range rooms {
		c.at[k] = now
	}
}

// findEmptyRooms schedules the close of every open room with no user and
// no stream: a new leader's take-over of its predecessor's schedule. It
// reads the rooms' keys only.
func (s *Server) findEmptyRooms(ctx context.Context, closing *closer) error {
	type seen struct{ open, busy bool }
	rooms := map[roomKey]*seen{}
	from, end := keys.Rooms, clientv3.GetPrefixRangeEnd(keys.Rooms)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(10_000)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cfg.Etcd.Get(ctx, from, opts...)
		if err != nil {
			return err
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			app, room, rest, ok := keys.SplitRoom(string(kv.Key))
			if !ok {
				continue
			}
			r := rooms[roomKey{app, room}]
			if r == nil {
				r = &seen{}
				rooms[roomKey{app, room}] = r
			}
			switch {
			case rest == "meta":
				r.open = true
			case strings.HasPrefix(rest, "users/"), strings.HasPrefix(rest, "streams/"):
				r.busy = true
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	now := s.cfg.Now()
	for k, r := range rooms {
		if r.open && !r.busy {
			closing.schedule(k, now)
		}
	}
	return nil
}
