package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/onair-dev/onair/services/auth"
)

// localApp is the app and keys a local run (`onair dev`, `onair cluster`)
// seeds, kept in its data dir so a restart logs into the same app.
type localApp struct {
	AppID       uint32 `json:"app_id"`
	Secret      string `json:"server_secret"`
	AdminKey    string `json:"admin_key"`
	InternalKey string `json:"internal_key"`
}

// loadLocalApp reads dir/name or makes a new app and keys. An explicit
// appID (with its secret, or a new one) and an explicit secret or admin key
// win over what was kept.
func loadLocalApp(dir, name string, appID uint32, secret, adminKey string) (*localApp, error) {
	path := filepath.Join(dir, name)
	app := &localApp{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, app); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if appID != 0 && appID != app.AppID {
		app.AppID, app.Secret = appID, ""
	}
	if secret != "" {
		app.Secret = secret
	}
	if adminKey != "" {
		app.AdminKey = adminKey
	}
	if app.AppID == 0 {
		app.AppID = 1_000_000_000 + uint32(time.Now().UnixNano()%1_000_000_000)
	}
	if app.Secret == "" {
		app.Secret = auth.NewSecret()
	}
	if len(app.Secret) != 32 {
		return nil, fmt.Errorf("--app-secret must be 32 characters, got %d", len(app.Secret))
	}
	if app.AdminKey == "" {
		app.AdminKey = randomKey()
	}
	if app.InternalKey == "" {
		app.InternalKey = randomKey()
	}
	b, _ := json.MarshalIndent(app, "", "  ")
	return app, os.WriteFile(path, b, 0o600)
}
