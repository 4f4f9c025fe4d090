package tencent_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/tencent"
	"github.com/devicemq/mqtt/tencent/hubsim"
)

var testDevice = tencent.DeviceInfo{
	AuthMode:     tencent.AuthModeKey,
	Region:       tencent.RegionChina,
	ProductID:    "ABCDEFGHIJ",
	DeviceName:   "dev1",
	DeviceSecret: "c2VjcmV0a2V5MTIzNDU2Nzg5MA==",
}

// TestFlowAgainstStandIn runs the reference flow end to end against the
// embedded stand-in, over WebSocket and TCP: signed CONNECT, SUBSCRIBE,
// time request, reply, UNSUBSCRIBE, DISCONNECT.
func TestFlowAgainstStandIn(t *testing.T) {
	hubNow := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// The stand-in's clock is frozen months away from ours: the reply must
	// carry the hub's time, not the local one.
	hub, err := hubsim.Start(testDevice, &hubsim.Options{Now: func() time.Time { return hubNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	for name, d := range map[string]netx.Dialer{
		"ws":  netx.WebSocket(hub.WebSocketURL(), nil),
		"tcp": netx.TCP(hub.TCPAddr()),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			creds, err := testDevice.Sign(&tencent.SignOptions{Now: func() time.Time { return hubNow }})
			if err != nil {
				t.Fatal(err)
			}
			c, err := client.Dial(ctx, d, &client.Options{ClientID: creds.ClientID, Username: creds.Username, Password: creds.Password})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := tencent.ServerTime(ctx, c, testDevice.ProductID, testDevice.DeviceName)
			if err != nil {
				t.Fatal(err)
			}
			// The hub's clock is frozen, so the estimate is hubNow plus half
			// the round trip.
			if d := got.Sub(hubNow); d < 0 || d > time.Second {
				t.Errorf("server time %v, want about %v", got, hubNow)
			}
			if err := c.Disconnect(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n := hub.Stats().TimeRequests; n != 2 {
		t.Errorf("hub answered %d time requests, want 2", n)
	}
}

// TestWrongSecretRefused: a device signing with a wrong secret is refused
// with CONNACK 4, surfacing as client.ErrBadUsernameOrPassword, over both
// transports.
func TestWrongSecretRefused(t *testing.T) {
	hub, err := hubsim.Start(testDevice, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	wrong := testDevice
	wrong.DeviceSecret = "d3JvbmdzZWNyZXQxMjM0NTY="
	creds, err := wrong.Sign(nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]netx.Dialer{
		"ws":  netx.WebSocket(hub.WebSocketURL(), nil),
		"tcp": netx.TCP(hub.TCPAddr()),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.Dial(ctx, d, &client.Options{ClientID: creds.ClientID, Username: creds.Username, Password: creds.Password})
		cancel()
		var ce *client.ConnackError
		if !errors.Is(err, client.ErrBadUsernameOrPassword) || !errors.As(err, &ce) {
			t.Errorf("%s: Dial = %v, want CONNACK 4 (bad user name or password)", name, err)
		}
	}
}

// TestServerTimeResends: a request that gets no answer (as when IoT Hub has
// not yet applied a new subscription) is sent again. mosquitto plays the hub;
// a second client answers only the second request.
func TestServerTimeResends(t *testing.T) {
	defer tencent.SetTimeRequestInterval(200 * time.Millisecond)()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	responder, err := client.Dial(ctx, netx.TCP(b.TCPAddr), &client.Options{ClientID: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	defer responder.Close()
	var requests atomic.Int32
	reply := `{"type":"get","time":1700000000,"ntptime1":1700000000000,"ntptime2":1700000000000}`
	_, err = responder.Subscribe(ctx, client.Subscription{Filter: tencent.OperationTopic("P", "d"), QoS: 1, Handler: func(m client.Message) {
		if !strings.Contains(string(m.Payload), `"time"`) {
			return
		}
		if requests.Add(1) == 2 {
			go responder.Publish(ctx, client.Message{Topic: "$sys/operation/result/P/d", Payload: []byte(`{"type":"ssh","switch":0}`)})
			go responder.Publish(ctx, client.Message{Topic: "$sys/operation/result/P/d", Payload: []byte(reply)})
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	device, err := client.Dial(ctx, netx.TCP(b.TCPAddr), &client.Options{ClientID: "Pd"})
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	got, err := tencent.ServerTime(ctx, device, "P", "d")
	if err != nil {
		t.Fatal(err)
	}
	if n := requests.Load(); n < 2 {
		t.Errorf("%d requests, want at least 2", n)
	}
	if d := got.Sub(time.Unix(1700000000, 0)); d < 0 || d > time.Second {
		t.Errorf("server time %v", got)
	}
}

// TestServerTimeTimeout: no reply at all ends with ErrNoTimeReply when the
// context ends.
func TestServerTimeTimeout(t *testing.T) {
	defer tencent.SetTimeRequestInterval(100 * time.Millisecond)()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	device, err := client.Dial(ctx, netx.TCP(b.TCPAddr), &client.Options{ClientID: "Pd"})
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	_, err = tencent.ServerTime(short, device, "P", "d")
	if !errors.Is(err, tencent.ErrNoTimeReply) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNoTimeReply", err)
	}
}

// TestServerTimeAfterRefusal: over a Session whose credentials the hub
// refuses, ServerTime ends with ErrNoTimeReply wrapping the refusal: at
// once when the Session stops (the default), and with the context's end
// and the last refusal when RetryRefused keeps it trying. Before, it said
// only "context deadline exceeded" or "client closed".
func TestServerTimeAfterRefusal(t *testing.T) {
	hub, err := hubsim.Start(testDevice, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	wrong := testDevice
	wrong.DeviceSecret = "d3JvbmdzZWNyZXQxMjM0NTY="
	for _, retry := range []bool{false, true} {
		opts := wrong.SessionOptions(nil)
		if retry {
			opts.RetryRefused = func(*client.ConnackError, int) time.Duration { return 50 * time.Millisecond }
		}
		s, err := client.NewSession(netx.TCP(hub.TCPAddr()), &opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = tencent.ServerTime(ctx, s, wrong.ProductID, wrong.DeviceName)
		cancel()
		s.Close()
		<-s.Done()
		var ce *client.ConnackError
		if !errors.Is(err, tencent.ErrNoTimeReply) || !errors.As(err, &ce) || !errors.Is(err, client.ErrBadUsernameOrPassword) {
			t.Errorf("retry %v: ServerTime = %v, want ErrNoTimeReply wrapping CONNACK 4", retry, err)
		}
		if retry != errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("retry %v: ServerTime = %v: the context's end wrapped %v, want %v", retry, err, !retry, retry)
		}
	}
}
