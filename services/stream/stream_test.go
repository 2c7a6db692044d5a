package stream

import (
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

func kv(st *streamv1.StreamRecord, rev int64) *mvccpb.KeyValue {
	if st == nil {
		return nil
	}
	b, _ := proto.Marshal(st)
	return &mvccpb.KeyValue{Key: []byte("k"), Value: b, ModRevision: rev}
}

// Every change of a room's stream key becomes exactly one event, so that a
// consumer can match them to the revisions it sees.
func TestEvent(t *testing.T) {
	live := &streamv1.StreamRecord{StreamId: "s", ExtraInfo: "a", OwnerKind: streamv1.OwnerKind_OWNER_KIND_EDGE}
	sessionOwned := &streamv1.StreamRecord{StreamId: "s", OwnerKind: streamv1.OwnerKind_OWNER_KIND_SESSION}
	changed := &streamv1.StreamRecord{StreamId: "s", ExtraInfo: "b", OwnerKind: streamv1.OwnerKind_OWNER_KIND_EDGE}
	ended := &streamv1.StreamRecord{StreamId: "s", Ended: true, DeleteReason: streamv1.DeleteReason_DELETE_REASON_KICKED}
	tests := []struct {
		name       string
		typ        mvccpb.Event_EventType
		prev, cur  *streamv1.StreamRecord
		wantKind   streamv1.StreamEvent_Kind
		wantReason streamv1.DeleteReason
	}{
		{"new stream", mvccpb.PUT, nil, live, streamv1.StreamEvent_KIND_ADD, 0},
		{"extra info", mvccpb.PUT, live, changed, streamv1.StreamEvent_KIND_EXTRA_INFO, 0},
		{"same info (owner moved)", mvccpb.PUT, live, live, streamv1.StreamEvent_KIND_PROGRESS, 0},
		{"ended with a reason", mvccpb.PUT, live, ended, streamv1.StreamEvent_KIND_DELETE, streamv1.DeleteReason_DELETE_REASON_KICKED},
		{"ended key removed", mvccpb.DELETE, ended, nil, streamv1.StreamEvent_KIND_PROGRESS, 0},
		{"edge lease expired", mvccpb.DELETE, live, nil, streamv1.StreamEvent_KIND_DELETE, streamv1.DeleteReason_DELETE_REASON_DISCONNECTED},
		{"session lease expired", mvccpb.DELETE, sessionOwned, nil, streamv1.StreamEvent_KIND_DELETE, streamv1.DeleteReason_DELETE_REASON_HEARTBEAT_TIMEOUT},
		{"republished after end", mvccpb.PUT, ended, live, streamv1.StreamEvent_KIND_ADD, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &clientv3.Event{Type: tt.typ, PrevKv: kv(tt.prev, 6), Kv: kv(tt.cur, 7)}
			if ev.Kv == nil {
				ev.Kv = &mvccpb.KeyValue{Key: []byte("k"), ModRevision: 7}
			}
			got, err := Event(ev)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != tt.wantKind || got.Reason != tt.wantReason || got.Revision != 7 {
				t.Errorf("event = %v %v @%d, want %v %v @7", got.Kind, got.Reason, got.Revision, tt.wantKind, tt.wantReason)
			}
		})
	}
}
