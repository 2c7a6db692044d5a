package main

import (
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/loginbench"
)

func TestParseLogins(t *testing.T) {
	base := []string{"--app-id", "7", "--app-secret", "s3cret"}
	with := func(args ...string) []string { return append(slices.Clone(base), args...) }
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c loginbench.Config)
		wantErr string
	}{
		{name: "defaults", args: base, check: func(t *testing.T, c loginbench.Config) {
			if c.AppID != 7 || c.Secret != "s3cret" || c.Workers != 32 || c.Rooms != 100 || c.Duration != 15*time.Second ||
				c.Stay || c.FreshEngines || c.UserUpdates || c.Callbacks != nil || len(c.PIDs) != 0 || len(c.EtcdEndpoints) != 0 ||
				!slices.Equal(c.Servers, []string{"127.0.0.1:9090"}) {
				t.Errorf("%+v", c)
			}
		}},
		{name: "cluster run", args: with("--server", "127.0.0.1:1, 127.0.0.1:2", "--workers", "64", "--duration", "2s",
			"--etcd-endpoints", "http://127.0.0.1:3,http://127.0.0.1:4", "--server-pid", "10,11", "--server-pid", "12"),
			check: func(t *testing.T, c loginbench.Config) {
				if !slices.Equal(c.Servers, []string{"127.0.0.1:1", "127.0.0.1:2"}) || c.Workers != 64 || c.Duration != 2*time.Second ||
					len(c.EtcdEndpoints) != 2 || !slices.Equal(c.PIDs, []int{10, 11, 12}) {
					t.Errorf("%+v", c)
				}
			}},
		{name: "paced", args: with("--rate", "150"), check: func(t *testing.T, c loginbench.Config) {
			if c.Rate != 150 {
				t.Errorf("rate %v", c.Rate)
			}
		}},
		{name: "a single room filling up", args: with("--rooms", "1", "--stay", "--user-updates"), check: func(t *testing.T, c loginbench.Config) {
			if c.Rooms != 1 || !c.Stay || !c.UserUpdates {
				t.Errorf("%+v", c)
			}
		}},
		{name: "callbacks, auth on the first server", args: with("--server", "127.0.0.1:5,127.0.0.1:6", "--callback-listen", "127.0.0.1:0", "--admin-key", "k"),
			check: func(t *testing.T, c loginbench.Config) {
				if cb := c.Callbacks; cb == nil || cb.Listen != "127.0.0.1:0" || cb.AuthServer != "127.0.0.1:5" || cb.AdminKey != "k" {
					t.Errorf("%+v", c.Callbacks)
				}
			}},
		{name: "admin key from the environment", args: with("--callback-listen", "127.0.0.1:0", "--auth-server", "127.0.0.1:8"),
			env: map[string]string{"ONAIR_ADMIN_KEY": "envkey"}, check: func(t *testing.T, c loginbench.Config) {
				if cb := c.Callbacks; cb == nil || cb.AdminKey != "envkey" || cb.AuthServer != "127.0.0.1:8" {
					t.Errorf("%+v", c.Callbacks)
				}
			}},
		{name: "secret from the environment", args: []string{"--app-id", "9"}, env: map[string]string{"ONAIR_APP_SECRET": "e"},
			check: func(t *testing.T, c loginbench.Config) {
				if c.Secret != "e" {
					t.Errorf("secret %q", c.Secret)
				}
			}},
		{name: "no app", args: nil, wantErr: "--app-id and --app-secret are required"},
		{name: "no workers", args: with("--workers", "0"), wantErr: "must be positive"},
		{name: "no duration", args: with("--duration", "0s"), wantErr: "must be positive"},
		{name: "negative rate", args: with("--rate", "-1"), wantErr: "--rate must not be negative"},
		{name: "no server", args: with("--server", " , "), wantErr: "--server is required"},
		{name: "bad pid", args: with("--server-pid", "12,x"), wantErr: `"x" is not a process ID`},
		{name: "callbacks without the admin key", args: with("--callback-listen", "127.0.0.1:0"), wantErr: "--admin-key"},
		{name: "stray argument", args: with("extra"), wantErr: "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Only the case's environment: t.Setenv restores the
			// variables it unsets here.
			for _, k := range []string{"ONAIR_ADMIN_KEY", "ONAIR_APP_SECRET", "ONAIR_SERVER"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := parseLogins(tc.args, io.Discard)
			if errorCase(t, err, tc.wantErr) {
				return
			}
			tc.check(t, c)
		})
	}
}
