package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/onair-dev/onair/token04"
)

// runToken mints a token the way a business server would.
func runToken(out io.Writer, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	appID := fs.Uint("app-id", 0, "AppID")
	secret := fs.String("app-secret", "", "the app's 32-character ServerSecret")
	userID := fs.String("user-id", "", "user the token is for")
	roomID := fs.String("room-id", "", "restrict the token to this room (adds a privilege payload)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	publish := fs.Bool("publish", false, "with --room-id: grant publishing (otherwise login only)")
	streams := fs.String("stream-ids", "", "with --room-id: comma-separated stream IDs the user may publish (default any)")
	cbc := fs.Bool("cbc", false, "use the legacy CBC layout instead of GCM")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *appID == 0 || *secret == "" || *userID == "" {
		return fmt.Errorf("--app-id, --app-secret and --user-id are required")
	}
	opts := &token04.Options{}
	if *cbc {
		opts.Mode = token04.CBC
	}
	if *roomID != "" || *publish || *streams != "" {
		p := &token04.Privilege{RoomID: *roomID, Login: true, Publish: *publish}
		if *streams != "" {
			p.StreamIDs = strings.Split(*streams, ",")
		}
		opts.Privilege = p
	}
	tok, err := token04.Mint(uint32(*appID), *userID, *secret, *ttl, opts)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
