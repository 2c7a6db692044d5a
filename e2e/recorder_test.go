package e2e

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/onair-dev/onair/sdk/express"
)

// recorder is an event handler that writes down what it is told.
type recorder struct {
	express.BaseEventHandler
	mu      sync.Mutex
	states  []express.RoomStateChangedReason
	codes   []int
	log     []string // user and stream callbacks, in order
	users   map[string]bool
	streams map[string]string // stream ID -> extra info
	deleted map[string]string // stream ID -> extendedData of its Delete
	counts  []int
	msgs    []string
	cmds    []string
	infos   map[string]string
	expire  int
}

func newRecorder() *recorder {
	return &recorder{users: map[string]bool{}, streams: map[string]string{}, deleted: map[string]string{}, infos: map[string]string{}}
}

func (r *recorder) OnRoomStateChanged(reason express.RoomStateChangedReason, code int, _ string, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, reason)
	r.codes = append(r.codes, code)
}

func ids(users []express.User) string {
	s := make([]string, len(users))
	for i, u := range users {
		s[i] = u.UserID
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func (r *recorder) OnRoomUserUpdate(t express.UpdateType, users []express.User, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range users {
		r.log = append(r.log, fmt.Sprintf("user %s %s", t, u.UserID))
		r.users[u.UserID] = t == express.UpdateTypeAdd
	}
}

func (r *recorder) OnRoomStreamUpdate(t express.UpdateType, streams []express.Stream, ext string, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range streams {
		r.log = append(r.log, fmt.Sprintf("stream %s %s", t, st.StreamID))
		if t == express.UpdateTypeAdd {
			r.streams[st.StreamID] = st.ExtraInfo
		} else {
			delete(r.streams, st.StreamID)
			r.deleted[st.StreamID] = ext
		}
	}
}

func (r *recorder) OnRoomStreamExtraInfoUpdate(streams []express.Stream, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range streams {
		r.streams[st.StreamID] = st.ExtraInfo
	}
}

func (r *recorder) OnRoomOnlineUserCountUpdate(n int, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = append(r.counts, n)
}

func (r *recorder) OnRoomExtraInfoUpdate(infos []express.RoomExtraInfo, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range infos {
		r.infos[i.Key] = i.Value
	}
}

func (r *recorder) OnIMRecvBroadcastMessage(msgs []express.BroadcastMessageInfo, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.msgs = append(r.msgs, m.FromUser.UserID+":"+m.Message)
	}
}

func (r *recorder) OnIMRecvCustomCommand(cmd string, from express.User, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, from.UserID+":"+cmd)
}

func (r *recorder) OnRoomTokenWillExpire(remain int, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire = remain
}

func (r *recorder) has(f func(r *recorder) bool) func() bool {
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return f(r)
	}
}

func (r *recorder) stateSeq() []express.RoomStateChangedReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]express.RoomStateChangedReason(nil), r.states...)
}

// events returns the user/stream log without lines about the listed users
// (a client is never told about itself, so logs compare only on others).
func (r *recorder) events(except ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.log {
		skip := false
		for _, e := range except {
			if strings.HasSuffix(l, " "+e) {
				skip = true
			}
		}
		if !skip {
			out = append(out, l)
		}
	}
	return out
}

// count is how many broadcast messages and custom commands r got.
func (r *recorder) count() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs), len(r.cmds)
}

// messages is the broadcast messages r got, as "from:message", in order.
func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}
