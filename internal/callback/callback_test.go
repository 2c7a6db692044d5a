package callback

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSign(t *testing.T) {
	for _, tt := range []struct {
		secret, timestamp, nonce, want string
	}{
		// hex sha1 of the three sorted as strings and concatenated
		// (computed independently: sha1("1700000000abc123secret")).
		{"secret", "1700000000", "abc123", "96b6d60ca8b62e363f8195f70b0971519549b559"},
		{"0123456789abcdef0123456789abcdef", "1499676968", "2170000000", "387dd8c86463b41947a6c6ee0af147582d143ebc"},
		// The order of the arguments does not matter, only their sorting.
		{"abc123", "secret", "1700000000", "96b6d60ca8b62e363f8195f70b0971519549b559"},
	} {
		if got := Sign(tt.secret, tt.timestamp, tt.nonce); got != tt.want {
			t.Errorf("Sign(%q, %q, %q) = %s, want %s", tt.secret, tt.timestamp, tt.nonce, got, tt.want)
		}
		if !Verify(tt.secret, tt.timestamp, tt.nonce, tt.want) {
			t.Errorf("Verify refuses its own signature")
		}
	}
	if Verify("secret", "1700000000", "abc124", "96b6d60ca8b62e363f8195f70b0971519549b559") {
		t.Error("Verify accepts a signature of another nonce")
	}
}

func TestSchedule(t *testing.T) {
	for _, tt := range []struct {
		base    time.Duration
		retries int
		want    []time.Duration
	}{
		{DefaultRetryBase, DefaultRetries, []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second}},
		{10 * time.Millisecond, 3, []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}},
		{time.Second, 0, []time.Duration{}},
	} {
		got := Schedule(tt.base, tt.retries)
		if len(got) != len(tt.want) {
			t.Fatalf("Schedule(%v, %d) = %v, want %v", tt.base, tt.retries, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("Schedule(%v, %d) = %v, want %v", tt.base, tt.retries, got, tt.want)
			}
		}
	}
}

func TestCloseReason(t *testing.T) {
	for _, tt := range []struct{ logout, want int }{
		{LogoutNormal, CloseNormal},
		{LogoutHeartbeatTimeout, CloseHeartbeatTimeout},
		{LogoutDisconnect, CloseOffline},
		{LogoutKicked, CloseKicked},
		{LogoutTokenExpired, CloseKicked},
		{99, CloseNormal},
	} {
		if got := CloseReason(tt.logout); got != tt.want {
			t.Errorf("CloseReason(%d) = %d, want %d", tt.logout, got, tt.want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, tt := range []struct {
		url        string
		allowLocal bool
		ok         bool
	}{
		{"", false, true},
		{"https://biz.example.com/onair", false, true},
		{"http://203.0.113.7:8080/cb", false, true},
		{"ftp://biz.example.com/", false, false},
		{"biz.example.com/cb", false, false},
		{"https://user:pw@biz.example.com/", false, false},
		{"http://127.0.0.1:9000/cb", false, false},
		{"http://127.0.0.1:9000/cb", true, true},
		{"http://[::1]/cb", false, false},
		{"http://localhost/cb", false, false},
		{"http://app.localhost./cb", false, false},
		{"http://169.254.169.254/latest/meta-data", false, false},
		{"http://[fe80::1]/cb", false, false},
		{"http://0.0.0.0/cb", false, false},
		{"http://[::ffff:127.0.0.1]/cb", false, false},
	} {
		err := CheckURL(tt.url, tt.allowLocal)
		if (err == nil) != tt.ok {
			t.Errorf("CheckURL(%q, %v) = %v, want ok=%v", tt.url, tt.allowLocal, err, tt.ok)
		}
	}
}

func TestCursor(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want Cursor
		ok   bool
	}{
		{"12/0", Cursor{12, 0}, true},
		{"12/3", Cursor{12, 3}, true},
		{"12", Cursor{}, false},
		{"x/1", Cursor{}, false},
	} {
		got, err := ParseCursor(tt.s)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseCursor(%q) = %v, %v", tt.s, got, err)
		}
		if tt.ok && got.String() != tt.s {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	c := Cursor{Rev: 10, N: 2}
	if c.Passed(10) || !c.Passed(9) {
		t.Error("Cursor{10,2} has passed 9 and not 10")
	}
}

// A real HTTP receiver on loopback: what a business server gets, and what a
// sender does with redirects and local addresses.
func TestSender(t *testing.T) {
	var hits atomic.Int32
	var got payload
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
			return
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &got) != nil {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer recv.Close()
	s := NewSender(5*time.Second, 8)
	ctx := context.Background()
	ev := Event{Event: RoomLogin, AppID: 7, EventID: "e1", RoomID: "r1", UserID: "u1", UserName: "Ann", EventTimeMs: 1}
	now := time.Unix(1700000000, 0)
	local := Target{URL: recv.URL + "/ok", Secret: "cbsecret", AllowLocal: true}

	if status, err := s.Send(ctx, local, ev, now); err != nil || status != 200 {
		t.Fatalf("Send = %d, %v", status, err)
	}
	if got.Event != ev || got.Timestamp != "1700000000" || len(got.Nonce) != 16 || !Verify("cbsecret", got.Timestamp, got.Nonce, got.Signature) {
		t.Errorf("received %+v", got)
	}

	redirect := local
	redirect.URL = recv.URL + "/redirect"
	before := hits.Load()
	if status, err := s.Send(ctx, redirect, ev, now); err == nil || status != http.StatusTemporaryRedirect {
		t.Errorf("redirect: %d, %v; want a failed attempt with 307", status, err)
	}
	if n := hits.Load() - before; n != 1 {
		t.Errorf("redirect followed: %d requests", n)
	}

	fail := local
	fail.URL = recv.URL + "/fail"
	if status, err := s.Send(ctx, fail, ev, now); err == nil || status != http.StatusServiceUnavailable {
		t.Errorf("503: %d, %v", status, err)
	}

	strict := local
	strict.AllowLocal = false
	before = hits.Load()
	if _, err := s.Send(ctx, strict, ev, now); !errors.Is(err, ErrLocalAddress) {
		t.Errorf("loopback without dev mode: %v, want ErrLocalAddress", err)
	}
	// A name that resolves to loopback is refused when dialing, too: the
	// strict client itself refuses, whatever CheckURL let through.
	if _, err := s.strict.Post(recv.URL+"/ok", "application/json", strings.NewReader("{}")); !errors.Is(err, ErrLocalAddress) {
		t.Errorf("strict client dialing loopback: %v, want ErrLocalAddress", err)
	}
	if err := refuseLocal("tcp", "127.0.0.1:80", nil); !errors.Is(err, ErrLocalAddress) {
		t.Errorf("refuseLocal(127.0.0.1) = %v", err)
	}
	if err := refuseLocal("tcp", "203.0.113.7:80", nil); err != nil {
		t.Errorf("refuseLocal(203.0.113.7) = %v", err)
	}
	if n := hits.Load() - before; n != 0 {
		t.Errorf("the receiver got %d requests from a refused sender", n)
	}
}
