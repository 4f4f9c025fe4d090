package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// Connect once, subscribe with a handler, publish at QoS 1 and wait for the
// message to come back, then disconnect.
func ExampleDial() {
	d, err := netx.URL("tcp://broker.example:1883", nil)
	if err != nil {
		log.Fatal(err) // a bad URL: nothing was dialled
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d, &client.Options{
		ClientID:  "sensor-7",
		KeepAlive: 60 * time.Second, // PINGREQ after 60 s without traffic
		Username:  "sensor-7",
		Password:  []byte(os.Getenv("MQTT_PASSWORD")),
	})
	if errors.Is(err, client.ErrBadUsernameOrPassword) {
		log.Fatal("check MQTT_PASSWORD: ", err) // CONNACK return code 4
	} else if err != nil {
		log.Fatal(err)
	}

	got := make(chan client.Message, 1)
	_, err = c.Subscribe(ctx, client.Subscription{
		Filter: "sensors/+/temp",
		QoS:    1,
		// Handlers run one at a time on the client's dispatcher goroutine:
		// hand the message over without blocking it.
		Handler: func(m client.Message) {
			select {
			case got <- m:
			default:
			}
		},
	})
	if err != nil {
		log.Fatal(err) // wraps client.ErrSubscriptionFailed when refused
	}

	// QoS 1: Publish returns once the server's PUBACK came.
	err = c.Publish(ctx, client.Message{Topic: "sensors/7/temp", Payload: []byte("21.5"), QoS: 1})
	if err != nil {
		log.Fatal(err)
	}

	select {
	case m := <-got:
		fmt.Printf("%s: %s °C\n", m.Topic, m.Payload)
	case <-ctx.Done():
		log.Print("no message: ", ctx.Err())
	}

	// Close sends DISCONNECT, waiting at most 1 s for it to be written.
	if err := c.Close(); err != nil {
		log.Print(err)
	}
}

// A Publish error says what became of the message, and so whether
// publishing it again is safe. Test ErrPending first: it may wrap
// ErrConnectionLost too.
func ExampleClient_Publish() {
	d, err := netx.URL("tcp://broker.example:1883", nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	c, err := client.Dial(ctx, d, nil) // generated client identifier, clean session
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // error ignored: the example ends either way

	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = c.Publish(pctx, client.Message{Topic: "events/door", Payload: []byte("open"), QoS: 1})
	switch {
	case err == nil:
		fmt.Println("delivered: the server sent PUBACK")
	case errors.Is(err, client.ErrPending):
		// Written, or kept by a Store: the client goes on sending it.
		// Publishing it again would duplicate it.
		fmt.Println("still pending:", err)
	case errors.Is(err, client.ErrConnectionLost):
		// Written, then the connection ended before PUBACK, and no Store
		// keeps it: the server may or may not have it. Send it again on a
		// new connection if duplicates are harmless.
		fmt.Println("outcome unknown:", err)
	case errors.Is(err, client.ErrNotSent):
		// Nothing reached the server and the client kept nothing:
		// a retry is safe (ErrClosed too when the client has ended).
		fmt.Println("not sent, retry:", err)
	case errors.Is(err, client.ErrDropped):
		// Expired, too many attempts or discarded: see Options.OnDrop.
		fmt.Println("dropped:", err)
	case errors.Is(err, packet.ErrInvalid), errors.Is(err, packet.ErrPacketTooLarge):
		// The message itself is wrong: retrying will not help.
		fmt.Println("bad message:", err)
	default:
		fmt.Println("publish:", err)
	}
}

// A Session that outlives connections and, with a FileStore, restarts of
// the program: messages given to Enqueue are on disk before it returns and
// are sent, and sent again, until the server acknowledges them.
func ExampleNewSession() {
	d, err := netx.URL("mqtts://broker.example:8883", &netx.Options{CAFile: "/etc/gateway/ca.pem"})
	if err != nil {
		log.Fatal(err) // bad URL, unreadable CA file
	}

	store, err := client.OpenFileStore("/var/lib/gateway/mqtt.session", nil) // fsync per record
	if errors.Is(err, client.ErrStoreLocked) {
		log.Fatal("another process uses the session: ", err)
	} else if err != nil {
		log.Fatal(err)
	}

	s, err := client.NewSession(d, &client.SessionOptions{
		Options: client.Options{
			ClientID:          "gateway-1", // a persistent session needs its own ClientID
			PersistentSession: true,        // clean session 0: the server keeps the session too
			Store:             store,
			KeepAlive:         60 * time.Second,
			OnDrop: func(m client.Message, err error) {
				log.Printf("gave up on %s: %v", m.Topic, err)
			},
		},
		MinBackoff: 5 * time.Second, // first wait before reconnecting, doubled up to MaxBackoff
		MaxBackoff: 2 * time.Minute,
		OnConnect: func(sessionPresent bool) {
			// Subscriptions are restored by now; sessionPresent is false
			// when the server had lost the session.
			log.Printf("connected, session present: %v", sessionPresent)
		},
		OnConnectionLost: func(err error) { log.Print("connection lost: ", err) },
	})
	if err != nil {
		log.Fatal(err) // invalid options or an unreadable store
	}

	ctx := context.Background()
	// Store and forward: Enqueue returns once the message is accepted and in
	// the store, connected or not; it waits only for room among the pending
	// messages (Options.MaxPending), here at most 10 s.
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = s.Enqueue(ectx, client.Message{
		Topic:   "gateway-1/events",
		Payload: []byte(`{"door":"open"}`),
		QoS:     1,
		Expires: time.Now().Add(24 * time.Hour), // not worth sending after a day
	})
	cancel()
	if err != nil {
		log.Print(err) // ErrNotSent: nothing kept, a retry is safe
	}

	// ... the program runs ...

	// Disconnect waits at most 5 s for DISCONNECT to be written. Messages
	// not yet acknowledged stay in the store for the next run.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Disconnect(dctx); err != nil {
		log.Print(err)
	}
	// The Session does not close the store: wait until it is done with it.
	<-s.Done()
	if err := store.Close(); err != nil {
		log.Print(err)
	}
}

// By default a Session stops at a permanent refusal (CONNACK return code 1,
// 2, 4 or 5). RetryRefused keeps trying instead, waiting 1 min longer after
// each refusal, at most 30 min, and gives up after 60 refusals in a row
// (about 23 h).
func ExampleSessionOptions_retryRefused() {
	d, err := netx.URL("wss://broker.example/mqtt", nil)
	if err != nil {
		log.Fatal(err)
	}
	s, err := client.NewSession(d, &client.SessionOptions{
		Options: client.Options{ClientID: "sensor-7"},
		// Read anew for every attempt, so that a fixed password is used
		// without restarting the program.
		Credentials: func(ctx context.Context) (string, []byte, error) {
			pass, err := os.ReadFile("/etc/sensor/mqtt-password")
			return "sensor-7", []byte(strings.TrimSpace(string(pass))), err
		},
		RetryRefused: func(err *client.ConnackError, refusals int) time.Duration {
			if refusals > 60 {
				return -1 // stop: Err returns the refusal
			}
			return min(time.Duration(refusals)*time.Minute, 30*time.Minute)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // error ignored: nothing is pending

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitConnected(ctx); err != nil {
		var refused *client.ConnackError
		if errors.As(s.LastError(), &refused) {
			log.Printf("refused (%v), retrying: %v", refused.Code, err)
		} else {
			log.Printf("not connected yet (%v): %v", s.LastError(), err)
		}
		return
	}
	fmt.Println("connected")
}

// Discard drops pending QoS 1 and 2 messages that are no longer worth
// sending, here older readings of a topic once a newer one is published.
// OnDrop is told of each of them.
func ExampleClient_Discard() {
	d, err := netx.URL("tcp://broker.example:1883", nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	c, err := client.Dial(ctx, d, &client.Options{
		OnDrop: func(m client.Message, err error) {
			// err wraps client.ErrDiscarded here. OnDrop runs on the
			// handler dispatcher: it must not block for long.
			log.Printf("dropped %s = %s: %v", m.Topic, m.Payload, err)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // error ignored: the example ends either way

	publish := func(reading string) {
		// Wait at most 2 s for the PUBACK; the message stays pending after.
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := c.Publish(pctx, client.Message{Topic: "sensors/7/temp", Payload: []byte(reading), QoS: 1})
		if err != nil && !errors.Is(err, client.ErrPending) {
			log.Print(err)
		}
	}

	publish("21.5")
	// A newer reading replaces any older one not yet acknowledged. match
	// runs with the client's outbox locked: it must not call the client.
	n := c.Discard(func(m client.Message) bool { return m.Topic == "sensors/7/temp" })
	publish("21.7")
	fmt.Println("discarded:", n)
}

func ExampleMatchTopic() {
	fmt.Println(client.MatchTopic("sensors/+/temp", "sensors/7/temp"))
	fmt.Println(client.MatchTopic("sensors/+/temp", "sensors/7/humidity"))
	fmt.Println(client.MatchTopic("sensors/#", "sensors")) // "#" includes the parent level
	fmt.Println(client.MatchTopic("#", "$SYS/uptime"))     // wildcards do not match "$" topics
	// Output:
	// true
	// false
	// true
	// false
}

// Errors wrap sentinels: test them with errors.Is, and find a server's
// refusal with errors.As.
func Example_errors() {
	var err error = &client.ConnackError{Code: packet.BadUsernameOrPassword} // return code 4
	fmt.Println(err)
	fmt.Println(errors.Is(err, client.ErrBadUsernameOrPassword))

	// A refusal wrapped by the caller is still found.
	err = fmt.Errorf("start: %w", err)
	var refused *client.ConnackError
	if errors.As(err, &refused) {
		fmt.Println("permanent:", refused.Permanent())
	}
	// Return code 3, server unavailable, may pass by itself.
	fmt.Println("permanent:", client.ErrServerUnavailable.Permanent())

	// Some sentinels wrap others.
	fmt.Println(errors.Is(client.ErrNotConnected, client.ErrNotSent))
	fmt.Println(errors.Is(client.ErrExpired, client.ErrDropped))
	// Output:
	// mqtt: connection refused: bad user name or password (return code 4)
	// true
	// permanent: true
	// permanent: false
	// true
	// true
}
