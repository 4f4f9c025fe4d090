package client

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// transports returns a dialer per mosquitto listener: plain TCP and
// WebSocket.
func transports(b *mosquitto.Broker) map[string]netx.Dialer {
	return map[string]netx.Dialer{
		"tcp": netx.TCP(b.TCPAddr),
		"ws":  netx.WebSocket(b.WSURL, nil),
	}
}

// TestMosquitto runs the client against a real mosquitto over TCP and
// WebSocket: connect, subscribe, publish and receive at QoS 0, 1 and 2,
// unsubscribe, disconnect.
func TestMosquitto(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{WebSocket: true})
	for name, d := range transports(b) {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			id := "devicemq-" + name
			got := make(chan Message, 16)
			c, err := Dial(ctx, d, &Options{ClientID: id})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.SessionPresent() {
				t.Error("session present on a clean session [MQTT-3.2.2-1]")
			}
			codes, err := c.Subscribe(ctx,
				Subscription{Filter: "t/" + name + "/q1/#", QoS: 1, Handler: func(m Message) { got <- m }},
				Subscription{Filter: "t/" + name + "/+/two", QoS: 2, Handler: func(m Message) { got <- m }})
			if err != nil {
				t.Fatal(err)
			}
			if len(codes) != 2 || codes[0] != packet.GrantedQoS1 || codes[1] != packet.GrantedQoS2 {
				t.Fatalf("return codes %v", codes)
			}
			for _, tc := range []struct {
				topic   string
				qos     byte
				wantQoS byte
			}{
				{"t/" + name + "/q1/a", 0, 0},
				{"t/" + name + "/q1/b", 1, 1},
				{"t/" + name + "/q1/c", 2, 1}, // delivered at min(published, granted) [MQTT-3.8.4-6]
				{"t/" + name + "/x/two", 2, 2},
				{"t/" + name + "/y/two", 1, 1},
			} {
				payload := []byte(fmt.Sprintf("%s at QoS %d", tc.topic, tc.qos))
				if err := c.Publish(ctx, Message{Topic: tc.topic, Payload: payload, QoS: tc.qos}); err != nil {
					t.Fatalf("Publish %s: %v", tc.topic, err)
				}
				select {
				case m := <-got:
					if m.Topic != tc.topic || string(m.Payload) != string(payload) || m.QoS != tc.wantQoS || m.Retain {
						t.Errorf("received %q %q QoS %d retain %v; want %q QoS %d", m.Topic, m.Payload, m.QoS, m.Retain, tc.topic, tc.wantQoS)
					}
				case <-ctx.Done():
					t.Fatalf("%s not received", tc.topic)
				}
			}
			// Retained message: delivered with retain set on a new
			// subscription [MQTT-3.3.1-8], then cleared with an empty one.
			retained := "t/" + name + "/retained"
			if err := c.Publish(ctx, Message{Topic: retained, Payload: []byte("r"), QoS: 1, Retain: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Subscribe(ctx, Subscription{Filter: retained, QoS: 1, Handler: func(m Message) { got <- m }}); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-got:
				if m.Topic != retained || !m.Retain || string(m.Payload) != "r" {
					t.Errorf("retained message %q retain=%v %q", m.Topic, m.Retain, m.Payload)
				}
			case <-ctx.Done():
				t.Fatal("retained message not received")
			}
			if err := c.Publish(ctx, Message{Topic: retained, QoS: 1, Retain: true}); err != nil {
				t.Fatal(err)
			}
			<-got // the empty retained message, forwarded to the live subscription

			// After UNSUBACK nothing more arrives on those filters.
			if err := c.Unsubscribe(ctx, "t/"+name+"/q1/#", "t/"+name+"/+/two", retained); err != nil {
				t.Fatal(err)
			}
			if err := c.Publish(ctx, Message{Topic: "t/" + name + "/q1/after", QoS: 1}); err != nil {
				t.Fatal(err)
			}
			// A QoS 1 round trip after the publish orders the check: had
			// mosquitto forwarded the message, it would have done so before
			// this PUBACK.
			if err := c.Publish(ctx, Message{Topic: "t/" + name + "/sync", QoS: 1}); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-got:
				t.Errorf("received %q after UNSUBSCRIBE", m.Topic)
			case <-time.After(200 * time.Millisecond):
			}
			// CONNECT, 3 SUBSCRIBE, 1 UNSUBSCRIBE, 9 PUBLISH, their acks...
			if st := c.Stats(); st.PacketsSent < 14 || st.PacketsReceived < 14 || st.BytesSent < 200 || st.BytesReceived < 200 || st.Connections != 1 || st.Pending != 0 {
				t.Errorf("stats %+v", st)
			}
			if err := c.Disconnect(ctx); err != nil {
				t.Fatal(err)
			}
			waitLog(t, b, "Received DISCONNECT from "+id)
			if err := c.Err(); !errors.Is(err, ErrClosed) {
				t.Errorf("Err after Disconnect = %v", err)
			}
		})
	}
}

// TestMosquittoKeepAlive: with a 1 s keep alive and nothing to send, the
// client sends PINGREQs, mosquitto answers, and the connection stays up.
func TestMosquittoKeepAlive(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{WebSocket: true})
	for name, d := range transports(b) {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			id := "devicemq-ka-" + name
			c, err := Dial(ctx, d, &Options{ClientID: id, KeepAlive: time.Second, PingTimeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitLog(t, b, "Sending PINGRESP to "+id)
			time.Sleep(2500 * time.Millisecond)
			if n := strings.Count(b.Log(), "Received PINGREQ from "+id); n < 2 {
				t.Errorf("%d PINGREQs in 2.5 s with a 1 s keep alive", n)
			}
			if err := c.Err(); err != nil {
				t.Fatalf("connection ended: %v", err)
			}
			if err := c.Publish(ctx, Message{Topic: "ka", QoS: 1}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMosquittoTakeover: mosquitto takes over a client identifier
// in use [MQTT-3.1.4-2]; the first client sees its connection lost.
func TestMosquittoTakeover(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := ctxT(t, 10*time.Second)
	first, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "same"})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "same"})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	select {
	case <-first.Done():
	case <-ctx.Done():
		t.Fatal("first client not disconnected")
	}
	if err := first.Err(); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("first client's Err = %v, want a connection loss", err)
	}
}

// waitLog waits up to 5 s for mosquitto to log s.
func waitLog(t *testing.T, b *mosquitto.Broker, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(b.Log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not log %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMosquittoConcurrentPublish: many goroutines publishing at mixed QoS
// through one client; with the in-flight window no message is dropped by
// mosquitto's inflight quota (it acknowledges and discards QoS 1 and 2
// messages beyond 20 in flight). Every QoS 1 message arrives at least once,
// every QoS 2 message exactly once.
func TestMosquittoConcurrentPublish(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := ctxT(t, 60*time.Second)
	var mu sync.Mutex
	counts := map[string]int{}
	all := make(chan struct{})
	const goroutines, each = 20, 50
	sub, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, Subscription{Filter: "load/#", QoS: 2, Handler: func(m Message) {
		mu.Lock()
		defer mu.Unlock()
		counts[string(m.Payload)]++
		if len(counts) == goroutines*each {
			close(all)
		}
	}}); err != nil {
		t.Fatal(err)
	}
	pub, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var g errgroup.Group
	for i := range goroutines {
		g.Go(func() error {
			for j := range each {
				qos := byte(1 + (i+j)%2)
				if err := pub.Publish(ctx, Message{Topic: fmt.Sprintf("load/%d", i), Payload: []byte(fmt.Sprintf("%d-%d-%d", qos, i, j)), QoS: qos}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("%d of %d distinct messages arrived", len(counts), goroutines*each)
	}
	mu.Lock()
	defer mu.Unlock()
	for m, n := range counts {
		if m[0] == '2' && n != 1 {
			t.Errorf("QoS 2 message %s arrived %d times", m, n)
		}
	}
}

// TestMosquittoHandlerForwards: a gateway's handler republishing each
// message at QoS 1 and waiting for the PUBACK, while many more messages
// arrive than the inbox holds, forwards them all.
func TestMosquittoHandlerForwards(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := ctxT(t, 30*time.Second)
	const n = 200
	done := make(chan struct{})
	var got atomic.Int32
	sink, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "sink"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if _, err := sink.Subscribe(ctx, Subscription{Filter: "out", QoS: 1, Handler: func(Message) {
		if got.Add(1) == n {
			close(done)
		}
	}}); err != nil {
		t.Fatal(err)
	}
	var gw *Client
	gw, err = Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "gw", InboxSize: 4, KeepAlive: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if _, err := gw.Subscribe(ctx, Subscription{Filter: "in", QoS: 1, Handler: func(m Message) {
		if err := gw.Publish(ctx, Message{Topic: "out", Payload: m.Payload, QoS: 1}); err != nil {
			select {
			case <-done: // the test is over and closing the client
			default:
				t.Errorf("forward: %v", err)
			}
		}
	}}); err != nil {
		t.Fatal(err)
	}
	src, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "src"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i := range n {
		if err := src.Publish(ctx, Message{Topic: "in", Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("%d of %d forwarded", got.Load(), n)
	}
}
