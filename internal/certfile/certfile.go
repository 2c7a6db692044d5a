// Package certfile serves a TLS certificate and key from PEM files and
// picks up renewed files without a restart.
//
// A Reloader loads the pair when it is made and then, at most once per
// CheckInterval and only when a handshake asks for the certificate, reads
// the two files again; when their contents changed and they form a valid
// pair, the next handshake gets the new certificate. A renewal caught half
// written (the new certificate with the old key) is not an error for
// clients: the old pair stays in use and the files are read again at the
// next check. This suits certificates written by cert-manager into a
// Kubernetes Secret volume (swapped atomically), certbot, or by hand.
package certfile

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often, at most, the files are read again.
const DefaultCheckInterval = time.Second

// Config names the files.
type Config struct {
	// CertFile holds the certificate chain, leaf first; KeyFile its
	// private key (PEM).
	CertFile, KeyFile string
	// CheckInterval is the least time between two reads of the files;
	// DefaultCheckInterval if zero.
	CheckInterval time.Duration
	// Logger is told about renewals and renewals that fail;
	// slog.Default() if nil.
	Logger *slog.Logger
}

// Reloader serves the current pair; its methods are safe for concurrent
// use from any number of handshakes.
type Reloader struct {
	cfg Config
	cur atomic.Pointer[tls.Certificate]
	due atomic.Int64 // unix nanoseconds of the next check

	mu              sync.Mutex // one check at a time
	certPEM, keyPEM []byte     // what cur was made from
	lastBad         string     // the failure last logged, logged once
}

// New loads the pair. It fails if the files cannot be read or do not form
// a valid pair, so a mistake shows at start-up rather than at the first
// handshake.
func New(cfg Config) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("certfile: both a certificate file and a key file are needed")
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Reloader{cfg: cfg}
	certPEM, keyPEM, cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.certPEM, r.keyPEM = certPEM, keyPEM
	r.cur.Store(cert)
	r.due.Store(time.Now().Add(cfg.CheckInterval).UnixNano())
	return r, nil
}

// load reads and parses the files.
func (r *Reloader) load() (certPEM, keyPEM []byte, cert *tls.Certificate, err error) {
	if certPEM, err = os.ReadFile(r.cfg.CertFile); err != nil {
		return nil, nil, nil, fmt.Errorf("certfile: %w", err)
	}
	if keyPEM, err = os.ReadFile(r.cfg.KeyFile); err != nil {
		return nil, nil, nil, fmt.Errorf("certfile: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return certPEM, keyPEM, nil, fmt.Errorf("certfile: %s and %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	return certPEM, keyPEM, &c, nil
}

// Reload reads the files now. It reports whether the certificate changed;
// on an error the current pair stays in use.
func (r *Reloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *Reloader) reloadLocked() (bool, error) {
	r.due.Store(time.Now().Add(r.cfg.CheckInterval).UnixNano())
	certPEM, keyPEM, cert, err := r.load()
	if certPEM != nil && keyPEM != nil && bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM) {
		return false, nil
	}
	if err != nil {
		if bad := string(certPEM) + "\x00" + string(keyPEM) + "\x00" + err.Error(); bad != r.lastBad {
			r.cfg.Logger.Warn("certfile: cannot load the changed files; still serving the previous certificate", "err", err)
			r.lastBad = bad
		}
		return false, err
	}
	r.certPEM, r.keyPEM, r.lastBad = certPEM, keyPEM, ""
	r.cur.Store(cert)
	if cert.Leaf != nil {
		r.cfg.Logger.Info("certfile: certificate renewed", "file", r.cfg.CertFile,
			"subject", cert.Leaf.Subject.String(), "serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
	}
	return true, nil
}

// Certificate is the current pair, after reading the files again if a
// check is due. A handshake that finds another one checking does not wait.
func (r *Reloader) Certificate() *tls.Certificate {
	if time.Now().UnixNano() >= r.due.Load() && r.mu.TryLock() {
		if time.Now().UnixNano() >= r.due.Load() {
			_, _ = r.reloadLocked()
		}
		r.mu.Unlock()
	}
	return r.cur.Load()
}

// GetCertificate is for tls.Config.GetCertificate (servers).
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate (clients
// that authenticate with a certificate).
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// ServerConfig is a server configuration serving the pair: TLS 1.2 or
// newer, the certificate chosen at each handshake.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// LoadPool reads a PEM bundle of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certfile: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("certfile: %s holds no PEM certificate", file)
	}
	return p, nil
}
