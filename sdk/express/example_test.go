package express_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

// roomPrinter prints who and what comes and goes.
type roomPrinter struct {
	express.BaseEventHandler
}

func (roomPrinter) OnRoomStateChanged(reason express.RoomStateChangedReason, code int, ext, roomID string) {
	fmt.Println("room", roomID, reason, code, ext)
}

func (roomPrinter) OnRoomUserUpdate(t express.UpdateType, users []express.User, roomID string) {
	for _, u := range users {
		fmt.Println(t, "user", u.UserID)
	}
}

func (roomPrinter) OnRoomStreamUpdate(t express.UpdateType, streams []express.Stream, ext, roomID string) {
	for _, s := range streams {
		fmt.Println(t, "stream", s.StreamID, ext)
	}
}

// Log into a room of a server started with `onair dev --app-id 1234567890
// --app-secret 0123456789abcdef0123456789abcdef` and print its events.
func Example() {
	const appID, secret = 1234567890, "0123456789abcdef0123456789abcdef"
	// A business server mints the token; it's here to keep the example whole.
	token, err := token04.Mint(appID, "viewer-1", secret, time.Hour, nil)
	if err != nil {
		log.Fatal(err)
	}
	engine, err := express.CreateEngine(express.EngineProfile{AppID: appID, Server: "127.0.0.1:9090"}, roomPrinter{})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.DestroyEngine(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = engine.LoginRoom(ctx, "room-1", express.User{UserID: "viewer-1", UserName: "Viewer"},
		express.RoomConfig{IsUserStatusNotify: true, Token: token})
	if err != nil {
		log.Fatalf("login failed with code %d: %v", express.ErrorCode(err), err)
	}
	time.Sleep(time.Minute) // watch the room
}
