package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/centrifugal/centrifuge-go"

	"github.com/onair-dev/onair/sdk/express"
)

// centrifugoBenchConfig is a Centrifugo v6 configuration that bench
// messages --centrifugo runs against: anonymous clients (the bench mints no
// tokens for it, as a login costs nothing during the measured time) that
// subscribe to and publish into any channel, one node, memory broker.
//
//	centrifugo --config centrifugo.json
const centrifugoBenchConfig = `{
  "http_server": {"address": "127.0.0.1", "port": "8000"},
  "client": {"insecure": true, "allowed_origins": ["*"]},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_client": true}},
  "log": {"level": "error"}
}`

// centrifugoClients are the bench's Centrifugo clients, each with its own
// connection.
type centrifugoClients struct {
	endpoint string
	mu       sync.Mutex
	clients  []*centrifuge.Client
}

func newCentrifugoClients(endpoint string) *centrifugoClients {
	return &centrifugoClients{endpoint: endpoint}
}

func (cf *centrifugoClients) connect() (*centrifuge.Client, error) {
	c := centrifuge.NewProtobufClient(cf.endpoint, centrifuge.Config{})
	cf.mu.Lock()
	cf.clients = append(cf.clients, c)
	cf.mu.Unlock()
	return c, c.Connect()
}

// receiver connects a client that subscribes to channel and hands what it
// receives to rec; it returns once the subscription is confirmed.
func (cf *centrifugoClients) receiver(ctx context.Context, channel string, rec *msgReceiver) error {
	c, err := cf.connect()
	if err != nil {
		return err
	}
	sub, err := c.NewSubscription(channel)
	if err != nil {
		return err
	}
	subscribed := make(chan struct{})
	var once sync.Once
	sub.OnSubscribed(func(centrifuge.SubscribedEvent) { once.Do(func() { close(subscribed) }) })
	sub.OnPublication(func(e centrifuge.PublicationEvent) {
		rec.OnIMRecvBroadcastMessage([]express.BroadcastMessageInfo{{Message: string(e.Data)}}, channel)
	})
	if err := sub.Subscribe(); err != nil {
		return err
	}
	select {
	case <-subscribed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("centrifugo: no subscription to %s after 30 s", channel)
	}
}

// sender connects a client that publishes into channel without being
// subscribed to it (so it is not sent its own messages).
func (cf *centrifugoClients) sender(_ context.Context, channel string) (func(ctx context.Context, msg string) error, error) {
	c, err := cf.connect()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, msg string) error {
		_, err := c.Publish(ctx, channel, []byte(msg))
		return err
	}, nil
}

func (cf *centrifugoClients) close() {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	for _, c := range cf.clients {
		c.Close()
	}
}
