package room

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A batch never holds two requests that write one key (etcd would refuse
// it), keeps arrival order for those left for later, and puts a request
// that writes a range alone.
func TestCommitterBatches(t *testing.T) {
	put := func(k string) []clientv3.Op { return []clientv3.Op{clientv3.OpPut(k, "v")} }
	nested := func(k string) []clientv3.Op {
		return []clientv3.Op{clientv3.OpTxn(nil, nil, []clientv3.Op{clientv3.OpDelete(k)})}
	}
	for _, tc := range []struct {
		name    string
		reqs    [][]clientv3.Op
		batches []int // requests per batch, in order
	}{
		{"distinct keys share a batch", [][]clientv3.Op{put("a"), put("b"), put("c")}, []int{3}},
		{"same key waits", [][]clientv3.Op{put("a"), put("a"), put("b")}, []int{2, 1}},
		{"nested writes count", [][]clientv3.Op{put("a"), nested("a")}, []int{1, 1}},
		{"a range goes alone", [][]clientv3.Op{put("a"), {clientv3.OpDelete("p/", clientv3.WithPrefix())}, put("b")}, []int{2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCommitter(nil)
			for _, ops := range tc.reqs {
				r := &txnReq{then: ops, done: make(chan struct{})}
				r.writes, r.ranged = writesOf(ops)
				c.queue = append(c.queue, r)
			}
			var got []int
			for b := c.take(); len(b) > 0; b = c.take() {
				got = append(got, len(b))
			}
			if len(got) != len(tc.batches) {
				t.Fatalf("batches %v, want %v", got, tc.batches)
			}
			for i := range got {
				if got[i] != tc.batches[i] {
					t.Fatalf("batches %v, want %v", got, tc.batches)
				}
			}
		})
	}
	many := newCommitter(nil)
	for i := range maxBatch + 1 {
		r := &txnReq{then: put(string(rune('a'+i%26)) + string(rune('0'+i/26))), done: make(chan struct{})}
		r.writes, r.ranged = writesOf(r.then)
		many.queue = append(many.queue, r)
	}
	if n := len(many.take()); n != maxBatch {
		t.Fatalf("first batch of %d requests, want at most %d", n, maxBatch)
	}
}
