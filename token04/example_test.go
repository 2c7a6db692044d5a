package token04_test

import (
	"fmt"
	"log"
	"time"

	"github.com/onair-dev/onair/token04"
)

// ExampleMint mints a token that lets user "alice" into room "demo" and
// publish only stream "alice-cam", then verifies it as a service would.
func ExampleMint() {
	const (
		appID  = 1234567890
		secret = "fa94dd0f974cf2e293728a526b028271" // the app's ServerSecret
	)
	token, err := token04.Mint(appID, "alice", secret, time.Hour, &token04.Options{
		Privilege: &token04.Privilege{
			RoomID:    "demo",
			Login:     true,
			Publish:   true,
			StreamIDs: []string{"alice-cam"},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Hand token to alice's client; it presents it when logging in.

	claims, err := token04.Verify(token, appID, "alice", secret, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Payload)
	fmt.Println("login demo:", claims.AllowsLogin("demo"))
	fmt.Println("login other:", claims.AllowsLogin("other"))
	fmt.Println("publish alice-cam:", claims.AllowsPublish("demo", "alice-cam"))
	fmt.Println("publish bob-cam:", claims.AllowsPublish("demo", "bob-cam"))
	// Output:
	// {"room_id":"demo","privilege":{"1":1,"2":1},"stream_id_list":["alice-cam"]}
	// login demo: true
	// login other: false
	// publish alice-cam: true
	// publish bob-cam: false
}
