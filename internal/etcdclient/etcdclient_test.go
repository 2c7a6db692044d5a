package etcdclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/etcdclient"
)

func TestParseEndpoints(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"http://127.0.0.1:2379", []string{"http://127.0.0.1:2379"}},
		{" http://a:1 , ,http://b:2,", []string{"http://a:1", "http://b:2"}},
	} {
		got := etcdclient.ParseEndpoints(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("ParseEndpoints(%q) = %q, want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParseEndpoints(%q) = %q, want %q", tc.in, got, tc.want)
			}
		}
	}
}

// With etcd gone, every kind of call gives up by itself with
// ErrUnavailable while its caller is still waiting, and a caller's own,
// shorter deadline stays the caller's.
func TestCallsFailWithoutEtcd(t *testing.T) {
	e, err := embedetcd.Start(context.Background(), embedetcd.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := etcdclient.New(etcdclient.Config{Endpoints: e.Endpoints(), CallTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put while etcd runs: %v", err)
	}
	e.Close()

	calls := map[string]func() error{
		"get": func() error { _, err := cli.Get(ctx, "/k"); return err },
		"put": func() error { _, err := cli.Put(ctx, "/k", "w"); return err },
		"txn": func() error {
			_, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("/k"), ">", 0)).Then(clientv3.OpPut("/k", "x")).Commit()
			return err
		},
		"delete":     func() error { _, err := cli.Delete(ctx, "/k"); return err },
		"grant":      func() error { _, err := cli.Grant(ctx, 5); return err },
		"timeToLive": func() error { _, err := cli.TimeToLive(ctx, 1); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, etcdclient.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s without etcd: %v, want ErrUnavailable", name, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := cli.Get(short, "/k"); errors.Is(err, etcdclient.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("get with the caller's shorter deadline: %v, want the caller's DeadlineExceeded", err)
	}
}
