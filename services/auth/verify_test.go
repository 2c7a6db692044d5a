package auth

import (
	"context"
	"testing"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/testkit"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	"github.com/onair-dev/onair/token04"
)

// A Verifier sees an app the moment it is created and a new secret the
// moment it is set, and stops accepting the old secret's tokens.
func TestVerifierFollowsApps(t *testing.T) {
	ctx := context.Background()
	cli := testkit.Etcd(t)
	srv := New(Config{Etcd: cli})
	t.Cleanup(srv.Close)
	v := NewVerifier(cli, nil)
	t.Cleanup(v.Close)

	const app = 1234567890
	const secretA, secretB = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	login := func(secret string) error {
		tok, err := token04.Mint(app, "alice", secret, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.VerifyToken(ctx, &authv1.VerifyTokenRequest{AppId: app, UserId: "alice", Token: tok,
			Action: authv1.Action_ACTION_LOGIN, RoomId: "r"})
		return err
	}
	for _, step := range []struct {
		name   string
		secret string // the app's secret from this step on ("": no app yet)
		good   string // a secret whose tokens are accepted at once
		bad    string // a secret whose tokens are refused (eventually)
	}{
		{name: "no such app", bad: secretA},
		{name: "app created", secret: secretA, good: secretA},
		{name: "secret replaced", secret: secretB, good: secretB, bad: secretA},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.secret != "" {
				if _, err := srv.EnsureApp(ctx, app, step.secret); err != nil {
					t.Fatal(err)
				}
			}
			if step.good != "" {
				if err := login(step.good); err != nil {
					t.Errorf("token of the app's secret refused: %v", err)
				}
			}
			if step.bad != "" {
				testkit.Eventually(t, "the token is refused", func() bool {
					return errcode.Of(login(step.bad)) == errcode.LoginAuthFailed
				})
			}
		})
	}
}
