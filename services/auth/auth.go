// Package auth is the auth service: apps (AppID, ServerSecret, enabled
// services) stored in etcd, Token04 verification with privilege checks, and
// the signature check of the business-server API.
package auth

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/sharedlease"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	"github.com/onair-dev/onair/token04"
)

// AdminKeyHeader is the metadata key that opens the admin RPCs.
const AdminKeyHeader = "x-onair-admin-key"

// MaxClockSkew is how far a server-API timestamp may be from our clock.
const MaxClockSkew = 10 * time.Minute

// Config configures the auth service.
type Config struct {
	Etcd *clientv3.Client
	// AdminKey opens CreateApp, GetApp, UpdateApp and EnableService to callers that
	// send it; empty leaves them to other OnAir services only.
	AdminKey string
	// DebugTokens enables IssueDebugToken. Never in production.
	DebugTokens bool
	// DevMode lets apps send callbacks to loopback and link-local
	// addresses (App.callback_allow_local). Never in production.
	DevMode bool
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Server implements authv1.AuthServiceServer.
type Server struct {
	authv1.UnimplementedAuthServiceServer
	cfg Config

	// nonces shares leases among used signature nonces; a lease outlives
	// the skew window, so a nonce is remembered as long as its timestamp
	// would be accepted.
	nonces *sharedlease.Pool
	// verifier verifies tokens (verify.go).
	verifier *Verifier
}

// New returns an auth service on cfg.Etcd; Close stops it.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, nonces: sharedlease.New(cfg.Etcd, 2*MaxClockSkew+5*time.Minute, 5*time.Minute),
		verifier: NewVerifier(cfg.Etcd, cfg.Now)}
}

// Close stops the watch of the apps.
func (s *Server) Close() { s.verifier.Close() }

// VerifyToken verifies a token and the privilege for the requested action
// (Verifier.VerifyToken).
func (s *Server) VerifyToken(ctx context.Context, req *authv1.VerifyTokenRequest) (*authv1.VerifyTokenResponse, error) {
	return s.verifier.VerifyToken(ctx, req)
}

func appKey(appID uint32) string { return "/onair/apps/" + strconv.FormatUint(uint64(appID), 10) }

func (s *Server) requireAdmin(ctx context.Context) error {
	if grpcserver.IsInternal(ctx) {
		return nil
	}
	if s.cfg.AdminKey != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		for _, v := range md.Get(AdminKeyHeader) {
			if subtle.ConstantTimeCompare([]byte(v), []byte(s.cfg.AdminKey)) == 1 {
				return nil
			}
		}
	}
	return errcode.New(errcode.AdminOnly, "this call needs the admin key (x-onair-admin-key)")
}

// CreateApp creates an app. The AppID is unique by an etcd transaction.
func (s *Server) CreateApp(ctx context.Context, req *authv1.CreateAppRequest) (*authv1.CreateAppResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	secret := req.GetServerSecret()
	if secret == "" {
		secret = NewSecret()
	} else if len(secret) != 32 {
		return nil, errcode.New(errcode.InvalidParameter, "server_secret must be 32 characters")
	}
	if err := s.checkCallback(req.GetCallbackUrl(), req.GetCallbackAllowLocal()); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 8; attempt++ {
		id := req.GetAppId()
		if id == 0 {
			id = randomAppID()
		}
		app := &authv1.App{
			AppId: id, ServerSecret: secret, Name: req.GetName(), CallbackUrl: req.GetCallbackUrl(),
			CreateTimeUnix: s.cfg.Now().Unix(), CallbackSecret: NewSecret(), CallbackAllowLocal: req.GetCallbackAllowLocal(),
		}
		created, err := s.putIfAbsent(ctx, app)
		if err != nil {
			return nil, err
		}
		if created {
			return &authv1.CreateAppResponse{App: app}, nil
		}
		if req.GetAppId() != 0 {
			return nil, errcode.Newf(errcode.InvalidParameter, "app %d already exists", id)
		}
	}
	return nil, errcode.New(errcode.TokenInternal, "could not pick a free AppID")
}

func (s *Server) putIfAbsent(ctx context.Context, app *authv1.App) (bool, error) {
	b, err := proto.Marshal(app)
	if err != nil {
		return false, err
	}
	k := appKey(app.AppId)
	resp, err := s.cfg.Etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(b))).Commit()
	if err != nil {
		return false, errcode.Unavailable(err)
	}
	return resp.Succeeded, nil
}

// EnsureApp makes sure app appID exists with secret and live streaming on;
// `onair dev` seeds its app with it. An existing app's secret is replaced.
func (s *Server) EnsureApp(ctx context.Context, appID uint32, secret string) (*authv1.App, error) {
	if len(secret) != 32 {
		return nil, errcode.New(errcode.InvalidParameter, "server secret must be 32 characters")
	}
	app, err := s.app(ctx, appID)
	if err != nil && errcode.Of(err) != errcode.AppNotFound {
		return nil, err
	}
	if app == nil {
		app = &authv1.App{AppId: appID, Name: "dev", CreateTimeUnix: s.cfg.Now().Unix()}
	}
	app.ServerSecret = secret
	if app.CallbackSecret == "" {
		app.CallbackSecret = NewSecret()
	}
	if !slices.Contains(app.EnabledServices, authv1.Service_SERVICE_LIVE_STREAMING) {
		app.EnabledServices = append(app.EnabledServices, authv1.Service_SERVICE_LIVE_STREAMING)
	}
	b, err := proto.Marshal(app)
	if err != nil {
		return nil, err
	}
	if _, err := s.cfg.Etcd.Put(ctx, appKey(appID), string(b)); err != nil {
		return nil, errcode.Unavailable(err)
	}
	return app, nil
}

func (s *Server) app(ctx context.Context, appID uint32) (*authv1.App, error) {
	return getApp(ctx, s.cfg.Etcd, appID)
}

// getApp reads an app from etcd (linearizable).
func getApp(ctx context.Context, etcd *clientv3.Client, appID uint32) (*authv1.App, error) {
	resp, err := etcd.Get(ctx, appKey(appID))
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errcode.Newf(errcode.AppNotFound, "app %d does not exist", appID)
	}
	app := new(authv1.App)
	if err := proto.Unmarshal(resp.Kvs[0].Value, app); err != nil {
		return nil, fmt.Errorf("auth: decode app %d: %w", appID, err)
	}
	return app, nil
}

// GetApp returns an app with its secret (admin only).
func (s *Server) GetApp(ctx context.Context, req *authv1.GetAppRequest) (*authv1.GetAppResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	app, err := s.app(ctx, req.GetAppId())
	if err != nil {
		return nil, err
	}
	return &authv1.GetAppResponse{App: app}, nil
}

// checkCallback checks callback settings: a loopback or link-local
// callback URL, and the flag that allows one, only in dev mode.
func (s *Server) checkCallback(url string, allowLocal bool) error {
	if allowLocal && !s.cfg.DevMode {
		return errcode.New(errcode.InvalidParameter, "callback_allow_local needs a server in dev mode (onair dev)")
	}
	if err := callback.CheckURL(url, allowLocal); err != nil {
		if errors.Is(err, callback.ErrLocalAddress) {
			return errcode.New(errcode.InvalidParameter, "callback_url may not point at a loopback or link-local address, except for an app with callback_allow_local on a server in dev mode (onair dev)")
		}
		return errcode.New(errcode.InvalidParameter, err.Error())
	}
	return nil
}

// UpdateApp changes the fields it is given.
func (s *Server) UpdateApp(ctx context.Context, req *authv1.UpdateAppRequest) (*authv1.UpdateAppResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	app, err := s.updateApp(ctx, req.GetAppId(), func(app *authv1.App) error {
		if req.Name != nil {
			app.Name = req.GetName()
		}
		if req.CallbackUrl != nil {
			app.CallbackUrl = req.GetCallbackUrl()
		}
		if req.CallbackAllowLocal != nil {
			app.CallbackAllowLocal = req.GetCallbackAllowLocal()
		}
		if req.GetRotateCallbackSecret() || app.CallbackSecret == "" {
			app.CallbackSecret = NewSecret()
		}
		// Checked as a whole: a local URL does not stay once the flag
		// that allowed it is cleared.
		return s.checkCallback(app.CallbackUrl, app.CallbackAllowLocal)
	})
	if err != nil {
		return nil, err
	}
	return &authv1.UpdateAppResponse{App: app}, nil
}

// EnableService switches a service on or off for an app.
func (s *Server) EnableService(ctx context.Context, req *authv1.EnableServiceRequest) (*authv1.EnableServiceResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if req.GetService() == authv1.Service_SERVICE_UNSPECIFIED {
		return nil, errcode.New(errcode.InvalidParameter, "service must be given")
	}
	app, err := s.updateApp(ctx, req.GetAppId(), func(app *authv1.App) error {
		app.EnabledServices = slices.DeleteFunc(app.EnabledServices, func(v authv1.Service) bool { return v == req.GetService() })
		if req.GetEnabled() {
			app.EnabledServices = append(app.EnabledServices, req.GetService())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &authv1.EnableServiceResponse{App: app}, nil
}

// updateApp is a read-modify-write of an app, guarded by the key's mod
// revision so concurrent calls don't lose each other's changes.
func (s *Server) updateApp(ctx context.Context, appID uint32, change func(*authv1.App) error) (*authv1.App, error) {
	k := appKey(appID)
	for {
		resp, err := s.cfg.Etcd.Get(ctx, k)
		if err != nil {
			return nil, errcode.Unavailable(err)
		}
		if len(resp.Kvs) == 0 {
			return nil, errcode.Newf(errcode.AppNotFound, "app %d does not exist", appID)
		}
		app := new(authv1.App)
		if err := proto.Unmarshal(resp.Kvs[0].Value, app); err != nil {
			return nil, err
		}
		if err := change(app); err != nil {
			return nil, err
		}
		b, _ := proto.Marshal(app)
		txn, err := s.cfg.Etcd.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(k, string(b))).Commit()
		if err != nil {
			return nil, errcode.Unavailable(err)
		}
		if txn.Succeeded {
			return app, nil
		}
	}
}

// IssueDebugToken mints a basic token for development. It is an admin call
// even then: a token opens any room of the app, so minting one must take
// more than reaching the server.
func (s *Server) IssueDebugToken(ctx context.Context, req *authv1.IssueDebugTokenRequest) (*authv1.IssueDebugTokenResponse, error) {
	if !s.cfg.DebugTokens {
		return nil, errcode.New(errcode.AdminOnly, "debug tokens are disabled on this server (start it with --debug-tokens)")
	}
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	app, err := s.app(ctx, req.GetAppId())
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl <= 0 {
		ttl = time.Hour
	}
	now := s.cfg.Now()
	tok, err := token04.Mint(app.AppId, req.GetUserId(), app.ServerSecret, ttl, &token04.Options{Now: func() time.Time { return now }})
	if err != nil {
		return nil, errcode.New(errcode.InvalidParameter, err.Error())
	}
	return &authv1.IssueDebugTokenResponse{Token: tok, ExpireUnix: now.Add(ttl).Unix()}, nil
}

// VerifyServerSignature checks md5(AppId + SignatureNonce + ServerSecret +
// Timestamp) and remembers the nonce for longer than the allowed skew, so a
// captured request can't be replayed. It is internal: the services that
// serve a server API call it, and a business server has nothing to gain
// from it but a way to burn its own nonces.
func (s *Server) VerifyServerSignature(ctx context.Context, req *authv1.VerifyServerSignatureRequest) (*authv1.VerifyServerSignatureResponse, error) {
	if err := grpcserver.RequireInternal(ctx); err != nil {
		return nil, err
	}
	a := req.GetAuth()
	if a == nil {
		return nil, errcode.New(errcode.ServerSignatureInvalid, "the request is not signed (AppId, SignatureNonce, Timestamp, Signature)")
	}
	app, err := s.app(ctx, a.GetAppId())
	if errcode.Of(err) == errcode.AppNotFound {
		return nil, errcode.Newf(errcode.ServerSignatureInvalid, "app %d does not exist", a.GetAppId())
	}
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	if d := now.Sub(time.Unix(a.GetTimestamp(), 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return nil, errcode.New(errcode.ServerTimestampSkew, "timestamp is more than 10 minutes from the server's clock")
	}
	if len(a.GetSignatureNonce()) != 16 {
		return nil, errcode.New(errcode.ServerSignatureInvalid, "signature nonce must be 16 hex characters")
	}
	want := Sign(a.GetAppId(), a.GetSignatureNonce(), app.ServerSecret, a.GetTimestamp())
	if subtle.ConstantTimeCompare([]byte(want), []byte(a.GetSignature())) != 1 {
		return nil, errcode.New(errcode.ServerSignatureInvalid, "signature does not match")
	}
	k := fmt.Sprintf("/onair/nonces/%d/%s", a.GetAppId(), a.GetSignatureNonce())
	var txn *clientv3.TxnResponse
	if err := s.nonces.Do(ctx, func(lease clientv3.LeaseID) (err error) {
		txn, err = s.cfg.Etcd.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, "", clientv3.WithLease(lease))).Commit()
		return err
	}); err != nil {
		return nil, errcode.Unavailable(err)
	}
	if !txn.Succeeded {
		return nil, errcode.New(errcode.ServerNonceReplayed, "signature nonce was already used")
	}
	return &authv1.VerifyServerSignatureResponse{AppId: a.GetAppId()}, nil
}

// Sign computes a server-API signature: hex md5(AppId + SignatureNonce +
// ServerSecret + Timestamp).
func Sign(appID uint32, nonce, secret string, timestamp int64) string {
	sum := md5.Sum([]byte(strconv.FormatUint(uint64(appID), 10) + nonce + secret + strconv.FormatInt(timestamp, 10)))
	return hex.EncodeToString(sum[:])
}

// NewSecret returns a random 32-character ServerSecret.
func NewSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomAppID returns a 10-digit AppID like the vendor's.
func randomAppID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return 1_000_000_000 + binary.BigEndian.Uint32(b[:])%3_000_000_000
}
