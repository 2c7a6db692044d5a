package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/token04"
)

// The console is at /, the SDK at /sdk/onair-express.js, both from the
// binary; the dev routes exist only where ServeDevConsole mounted them and
// answer only this machine's own pages.
func TestConsoleAndDevRoutes(t *testing.T) {
	c := testcluster.New(t)
	gw, err := gateway.New(t.Context(), gateway.Config{Etcd: c.Etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	plain := httptest.NewServer(gw)
	t.Cleanup(plain.Close)

	get := func(base, path string, header map[string]string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for path, want := range map[string]string{
		"/":                       "text/html",
		"/console/console.js":     "text/javascript",
		"/console/console.css":    "text/css",
		"/sdk/onair-express.js":   "text/javascript",
		"/sdk/onair-express.d.ts": "text/plain",
	} {
		status, h, body := get(plain.URL, path, nil)
		if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), want) || body == "" {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %s", path, status, h.Get("Content-Type"), len(body), want)
		}
	}
	if _, h, _ := get(plain.URL, "/", nil); !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("the console has no content security policy: %q", h.Get("Content-Security-Policy"))
	}
	if status, _, _ := get(plain.URL, "/dev/app", nil); status != http.StatusNotFound {
		t.Errorf("GET /dev/app on a gateway without the dev console: %d, want 404", status)
	}
	if status, _, body := get(plain.URL, "/v1/nothing", nil); status != http.StatusNotFound || !strings.Contains(body, `"code"`) {
		t.Errorf("an unknown REST path: %d %s, want the JSON 404", status, body)
	}

	gw.ServeDevConsole(gateway.DevApp{AppID: testcluster.AppID, Secret: testcluster.Secret})
	dev := httptest.NewServer(gw)
	t.Cleanup(dev.Close)
	if status, _, body := get(dev.URL, "/dev/app", nil); status != http.StatusOK || !strings.Contains(body, `"app_id":1234567890`) {
		t.Errorf("GET /dev/app: %d %s", status, body)
	}
	mintToken := func(header map[string]string, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, dev.URL+"/dev/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			}
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := mintToken(map[string]string{"Origin": dev.URL}, `{"user_id":"u1"}`)
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); status != http.StatusOK || err != nil {
		t.Fatalf("POST /dev/token: %d %s", status, body)
	}
	if _, err := token04.Verify(tok.Token, testcluster.AppID, "u1", testcluster.Secret, time.Now()); err != nil {
		t.Errorf("the dev token does not verify: %v", err)
	}
	for what, h := range map[string]map[string]string{
		"another site's page": {"Origin": "http://evil.example"},
		"a cross-site fetch":  {"Sec-Fetch-Site": "cross-site"},
		"a rebound DNS name":  {"Host": "evil.example"},
	} {
		if status, body := mintToken(h, `{"user_id":"u1"}`); status != http.StatusForbidden || !strings.Contains(body, "1005005") {
			t.Errorf("%s: %d %s, want 403 with 1005005", what, status, body)
		}
	}
	if status, body := mintToken(nil, `{"user_id":""}`); status != http.StatusBadRequest || !strings.Contains(body, "1002005") {
		t.Errorf("no user_id: %d %s, want 400 with 1002005", status, body)
	}
}
