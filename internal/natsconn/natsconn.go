// Package natsconn opens the NATS connection of an OnAir process: one that
// never gives up (it connects in the background when NATS is down at start,
// and reconnects and resubscribes by itself after an outage) and never
// buffers publishes while disconnected, so a caller learns at once that a
// message could not be sent. It does not receive what it publishes itself
// (no echo).
package natsconn

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/onair-dev/onair/internal/rawconn"
)

// Config says where NATS is and how to authenticate.
type Config struct {
	// URL is one or more comma-separated nats:// (or tls://) URLs.
	URL string
	// Name identifies the connection in the server's monitoring.
	Name string
	// User and Password, Token, or CredsFile (a .creds file with a JWT and
	// an NKey seed): at most one way of authenticating.
	User, Password string
	Token          string
	CredsFile      string
	// TLS, when set, is used for the connection (CAs, client certificate).
	TLS *tls.Config
	// Options come after the ones above (embednats.Server.InProcess, tests).
	Options []nats.Option
	Logger  *slog.Logger
}

// Connect returns a connection that may not be connected yet: Status tells.
func Connect(cfg Config) (*nats.Conn, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "nats")
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 500*time.Millisecond),
		// A dead server is noticed within seconds even without a TCP reset.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.Timeout(2 * time.Second),
		// Reads and writes that do not wake the runtime's system monitor
		// (see rawconn); the timeout is Timeout's, which a custom dialer
		// replaces.
		nats.SetCustomDialer(&rawconn.Dialer{Dialer: net.Dialer{Timeout: 2 * time.Second}}),
		// Nothing is queued while disconnected: a publish fails instead.
		nats.ReconnectBufSize(-1),
		// A room replica hands its own messages to its own subscribers;
		// NATS need not send them back.
		nats.NoEcho(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected; reconnecting", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats error", "subject", subject, "err", err)
		}),
	}
	n := 0
	if cfg.User != "" || cfg.Password != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
		n++
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
		n++
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		n++
	}
	if n > 1 {
		return nil, errors.New("nats: give a user and password, a token or a credentials file, not several")
	}
	if cfg.TLS != nil {
		opts = append(opts, nats.Secure(cfg.TLS))
	}
	opts = append(opts, cfg.Options...)
	url := cfg.URL
	if url == "" {
		url = nats.DefaultURL
	}
	return nats.Connect(url, opts...)
}
