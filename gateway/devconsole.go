package gateway

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/token04"
)

// DevApp is the app `onair dev` seeds, which ServeDevConsole offers to the
// console.
type DevApp struct {
	AppID  uint32
	Secret string
	// TTL of the tokens minted; 24 h if zero.
	TTL time.Duration
}

// ServeDevConsole mounts two routes for the web console under `onair dev`
// only, never in a deployed gateway:
//
//	GET  /dev/app    {"app_id": N}
//	POST /dev/token  {"user_id": "u1"} -> {"token": "04...", "expire_unix": N}
//
// so that the console fills in the dev app and mints a (basic) token for
// the UserID typed in, without the admin key that IssueDebugToken takes.
// They answer only a browser or tool on the same machine: the peer must be
// a loopback address, the Host header a loopback name (no DNS rebinding),
// and a browser's request must come from the gateway's own origin (no other
// site open in the developer's browser may mint tokens); anything else gets
// 403 with code 1005005.
func (g *Gateway) ServeDevConsole(app DevApp) {
	if app.TTL <= 0 {
		app.TTL = 24 * time.Hour
	}
	g.mux.HandleFunc("GET /dev/app", func(w http.ResponseWriter, r *http.Request) {
		if !devLocal(w, r) {
			return
		}
		devJSON(w, http.StatusOK, map[string]any{"app_id": app.AppID})
	})
	g.mux.HandleFunc("POST /dev/token", func(w http.ResponseWriter, r *http.Request) {
		if !devLocal(w, r) {
			return
		}
		var req struct {
			UserID string `json:"user_id"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			devJSON(w, http.StatusBadRequest, errBody(errcode.InvalidParameter, "the body must be JSON: {\"user_id\": \"...\"}", "INVALID_ARGUMENT"))
			return
		}
		if strings.TrimSpace(req.UserID) == "" {
			devJSON(w, http.StatusBadRequest, errBody(errcode.UserIDEmpty, "user_id is empty", "INVALID_ARGUMENT"))
			return
		}
		now := time.Now()
		tok, err := token04.Mint(app.AppID, req.UserID, app.Secret, app.TTL, &token04.Options{Now: func() time.Time { return now }})
		if err != nil {
			devJSON(w, http.StatusBadRequest, errBody(errcode.InvalidParameter, err.Error(), "INVALID_ARGUMENT"))
			return
		}
		devJSON(w, http.StatusOK, map[string]any{"token": tok, "expire_unix": now.Add(app.TTL).Unix()})
	})
}

// devLocal refuses a request that does not come from this machine's own
// browser page or tool.
func devLocal(w http.ResponseWriter, r *http.Request) bool {
	refuse := func(why string) bool {
		devJSON(w, http.StatusForbidden, errBody(errcode.AdminOnly, "the dev console routes answer only this machine: "+why, "PERMISSION_DENIED"))
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return refuse("the request comes from another machine")
	}
	if !loopbackHost(r.Host) {
		return refuse("the Host is not a loopback name")
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return refuse("the request comes from another site's page")
		}
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return refuse("the request comes from another site's page")
	}
	return true
}

func loopbackHost(hostport string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func errBody(code errcode.Code, msg, status string) map[string]any {
	return map[string]any{"code": int(code), "message": msg, "status": status}
}

func devJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
