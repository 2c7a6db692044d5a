package callback

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target is where and how an app's callbacks go.
type Target struct {
	URL    string
	Secret string
	// AllowLocal lets callbacks reach loopback and link-local addresses:
	// only an app set up on a server in dev mode has it (auth.Config.DevMode).
	AllowLocal bool
}

// ErrLocalAddress is why a callback to a loopback or link-local address is
// refused.
var ErrLocalAddress = errors.New("callback: loopback and link-local addresses are refused (allowed only for apps set up in dev mode)")

// isLocal reports whether ip is loopback, link-local or unspecified: an
// address on or next to the server itself, which a callback URL must not
// reach from a shared deployment.
func isLocal(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsUnspecified()
}

// CheckURL checks a callback URL when an app sets it: empty (no callbacks),
// or http(s) with a host; a loopback or link-local host only if allowLocal.
// Names are checked again at connection time, against the addresses they
// resolve to.
func CheckURL(raw string, allowLocal bool) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("callback_url is not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("callback_url must be http or https, not %q", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("callback_url has no host")
	}
	if u.User != nil {
		return errors.New("callback_url must not carry credentials")
	}
	if allowLocal {
		return nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return ErrLocalAddress
	}
	if ip, err := netip.ParseAddr(host); err == nil && isLocal(ip) {
		return ErrLocalAddress
	}
	return nil
}

// refuseLocal is a dialer's Control: it runs on the resolved address, so a
// name that resolves to loopback is refused as well as a literal.
func refuseLocal(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	if isLocal(ip) {
		return ErrLocalAddress
	}
	return nil
}

// Sender posts callbacks. It follows no redirect (a 3xx is a failed
// attempt) and uses no proxy from the environment.
type Sender struct {
	timeout       time.Duration
	strict, local *http.Client
}

// NewSender returns a Sender whose attempts time out after timeout and
// that keeps up to conns idle connections per host: as many as attempts it
// makes at once, or each burst of a busy deliverer opens new connections.
func NewSender(timeout time.Duration, conns int) *Sender {
	client := func(control func(string, string, syscall.RawConn) error) *http.Client {
		d := &net.Dialer{Timeout: timeout, Control: control}
		return &http.Client{
			Transport: &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true,
				MaxIdleConnsPerHost: max(conns, 2), MaxIdleConns: max(conns, 2) * 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: timeout,
				ResponseHeaderTimeout: timeout},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       timeout,
		}
	}
	return &Sender{timeout: timeout, strict: client(refuseLocal), local: client(nil)}
}

// payload is the body of one attempt.
type payload struct {
	Event
	Timestamp string `json:"timestamp"`
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"`
}

// Body is the signed JSON body of an attempt at now.
func Body(ev Event, secret string, now time.Time) []byte {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := payload{Event: ev, Timestamp: strconv.FormatInt(now.Unix(), 10), Nonce: hex.EncodeToString(b)}
	p.Signature = Sign(secret, p.Timestamp, p.Nonce)
	out, _ := json.Marshal(p)
	return out
}

// Send makes one attempt: it returns the HTTP status (0 if there was none)
// and an error unless the status is 2xx.
func (s *Sender) Send(ctx context.Context, t Target, ev Event, now time.Time) (int, error) {
	if err := CheckURL(t.URL, t.AllowLocal); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(Body(ev, t.Secret, now)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "OnAir-Callback/1")
	c := s.strict
	if t.AllowLocal {
		c = s.local
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("callback: %s answered %s", t.URL, resp.Status)
	}
	return resp.StatusCode, nil
}
