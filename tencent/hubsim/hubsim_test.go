package hubsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/rawmqtt"
	"github.com/devicemq/mqtt/internal/testcerts"
	"github.com/devicemq/mqtt/tencent"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// These tests speak MQTT 3.1.1 in raw bytes with rawmqtt, not with the
// project's client, so that they test the simulator alone.

// hubNow is the simulator's clock in the tests: far from the real time, so
// a test passes only if the hub uses Options.Now.
var hubNow = time.UnixMilli(1500000000123)

func testDevice() tencent.DeviceInfo {
	return tencent.DeviceInfo{
		AuthMode:     tencent.AuthModeKey,
		Region:       tencent.RegionChina,
		ProductID:    "ABCDEFGHIJ",
		DeviceName:   "dev1",
		DeviceSecret: "c2VjcmV0a2V5MTIzNDU2Nzg5MA==",
	}
}

func startHub(t *testing.T) *Hub {
	t.Helper()
	h, err := Start(testDevice(), &Options{Now: func() time.Time { return hubNow }})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// sign returns credentials for d, valid at hubNow unless expiry says otherwise.
func sign(t *testing.T, d tencent.DeviceInfo, o *tencent.SignOptions) tencent.Credentials {
	t.Helper()
	if o == nil {
		o = &tencent.SignOptions{}
	}
	if o.Now == nil {
		o.Now = func() time.Time { return hubNow }
	}
	c, err := d.Sign(o)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return c
}

func credConnect(c tencent.Credentials) []byte {
	return rawmqtt.Connect(rawmqtt.ConnectOpts{ClientID: c.ClientID, Username: c.Username, Password: c.Password})
}

// connack sends connect and returns the CONNACK return code. The session
// present flag must be 0: every CONNECT here asks for a clean session.
func connack(c *rawmqtt.Client, connect []byte) byte {
	c.T.Helper()
	flags, code := c.Connack(connect)
	if flags != 0 {
		c.T.Errorf("CONNACK session present flag %#x, want 0", flags)
	}
	return code
}

// ---- tests ----

func TestConnectAccepted(t *testing.T) {
	h := startHub(t)
	for _, method := range []tencent.SignMethod{tencent.HMACSHA256, tencent.HMACSHA1} {
		c := rawmqtt.DialTCP(t, h.TCPAddr())
		if code := connack(c, credConnect(sign(t, testDevice(), &tencent.SignOptions{Method: method}))); code != 0 {
			t.Fatalf("%v: CONNACK code %d, want 0", method, code)
		}
	}

	// Signed with the hub's clock: long expired by the real clock, so this
	// shows the hub checks expiry against Options.Now.
	if hubNow.Add(time.Hour).After(time.Now()) {
		t.Fatal("hubNow must be in the past")
	}

	// MQTT 3.1 (as the Python SDK sends) and the C SDK's appid.
	c := rawmqtt.DialTCP(t, h.TCPAddr())
	cr := sign(t, testDevice(), &tencent.SignOptions{AppID: tencent.EmbeddedSDKAppID, Method: tencent.HMACSHA1})
	if code := connack(c, rawmqtt.Connect(rawmqtt.ConnectOpts{ClientID: cr.ClientID, Username: cr.Username, Password: cr.Password, Version: 3})); code != 0 {
		t.Fatalf("MQTT 3.1: CONNACK code %d, want 0", code)
	}
	if s := h.Stats(); s.Accepted != 3 || s.Refused != 0 {
		t.Errorf("Stats = %+v, want 3 accepted", s)
	}
}

func TestConnectRefused(t *testing.T) {
	h := startHub(t)

	good := sign(t, testDevice(), nil)
	otherSecret := testDevice()
	otherSecret.DeviceSecret = "b3RoZXJzZWNyZXQxMjM0NTY="
	otherDevice := testDevice()
	otherDevice.DeviceName = "dev2"
	expired := sign(t, testDevice(), &tencent.SignOptions{Expiry: hubNow.Add(-time.Second)})
	fraction := sign(t, testDevice(), &tencent.SignOptions{Expiry: hubNow.Add(-time.Millisecond * 124)}) // expiry second before hubNow's

	tamper := func(c tencent.Credentials, f func(*tencent.Credentials)) tencent.Credentials {
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		connect []byte
	}{
		{"wrong device secret", credConnect(sign(t, otherSecret, nil))},
		{"expired signature", credConnect(expired)},
		{"wrong client id", credConnect(tamper(good, func(c *tencent.Credentials) { c.ClientID = "ABCDEFGHIJdev2" }))},
		{"empty client id", credConnect(tamper(good, func(c *tencent.Credentials) { c.ClientID = "" }))},
		{"other device's credentials", credConnect(sign(t, otherDevice, nil))},
		{"other device's user name with this client id", credConnect(tamper(sign(t, otherDevice, nil), func(c *tencent.Credentials) { c.ClientID = good.ClientID }))},
		{"tampered user name", credConnect(tamper(good, func(c *tencent.Credentials) { c.Username = strings.Replace(c.Username, ";12010126;", ";21010406;", 1) }))},
		{"no password", rawmqtt.Connect(rawmqtt.ConnectOpts{ClientID: good.ClientID, Username: good.Username})},
		{"no user name or password", rawmqtt.Connect(rawmqtt.ConnectOpts{ClientID: good.ClientID})},
		{"Base64 text as key", credConnect(tamper(good, func(c *tencent.Credentials) {
			c.Password = []byte(strings.Repeat("0", 64) + ";hmacsha256")
		}))},
		{"MQTT 3.1, expired", rawmqtt.Connect(rawmqtt.ConnectOpts{ClientID: expired.ClientID, Username: expired.Username, Password: expired.Password, Version: 3})},
		{"expired by a fraction of a second", credConnect(fraction)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawmqtt.DialTCP(t, h.TCPAddr())
			if code := connack(c, tt.connect); code != connackBadUsernameOrPassword {
				t.Fatalf("CONNACK code %d, want %d (bad user name or password)", code, connackBadUsernameOrPassword)
			}
			c.ExpectClosed()
			if s := h.Stats(); s.Refused != int64(i+1) || s.Accepted != 0 {
				t.Errorf("Stats = %+v, want %d refused", s, i+1)
			}
		})
	}
}

func TestTimeService(t *testing.T) {
	h := startHub(t)
	dev := testDevice()
	wantReply := `{"type":"get","time":1500000000,"ntptime1":1500000000123,"ntptime2":1500000000123}`

	for _, subQoS := range []byte{0, 1} {
		t.Run(fmt.Sprintf("subscription QoS %d", subQoS), func(t *testing.T) {
			c := rawmqtt.DialTCP(t, h.TCPAddr())
			if code := connack(c, credConnect(sign(t, dev, nil))); code != 0 {
				t.Fatalf("CONNACK code %d", code)
			}
			if got := c.Subscribe(1, dev.OperationResultTopic(), subQoS); got != subQoS {
				t.Fatalf("SUBACK code %#x, want %d", got, subQoS)
			}

			checkReply := func(sentAt time.Time) {
				t.Helper()
				m := c.ReadPublish()
				if m.Topic != "$sys/operation/result/ABCDEFGHIJ/dev1" || m.Payload != wantReply {
					t.Fatalf("reply %q on %q, want %s on the result topic", m.Payload, m.Topic, wantReply)
				}
				if m.QoS != subQoS {
					t.Errorf("reply QoS %d, want the subscription's %d", m.QoS, subQoS)
				}
				if m.QoS == 1 {
					c.Send(rawmqtt.Puback(m.ID))
				}
				got, err := tencent.ParseTimeReply([]byte(m.Payload), sentAt, sentAt)
				if err != nil || !got.Equal(hubNow) {
					t.Errorf("ParseTimeReply = %v, %v; want %v", got, err, hubNow)
				}
			}

			// QoS 0 request.
			before := h.Stats().TimeRequests
			c.Send(rawmqtt.Publish(dev.OperationTopic(), tencent.TimeRequestPayload, 0, 0, false))
			checkReply(time.Now())

			// QoS 1 request: PUBACK first, then the reply.
			c.Send(rawmqtt.Publish(dev.OperationTopic(), tencent.TimeRequestPayload, 1, 77, false))
			ack := c.Expect(rawmqtt.TypePuback)
			if !bytes.Equal(ack.Body, []byte{0, 77}) {
				t.Fatalf("PUBACK body % x, want 00 4d", ack.Body)
			}
			checkReply(time.Now())

			// Something else on the operation topic is acknowledged and
			// ignored; the request is never forwarded to subscribers.
			c.Send(rawmqtt.Publish(dev.OperationTopic(), `{"type":"ssh","switch":1}`, 1, 78, false))
			c.Expect(rawmqtt.TypePuback)
			c.Send(rawmqtt.Publish(dev.OperationTopic(), `not json`, 0, 0, false))
			c.ExpectSilence(200 * time.Millisecond)

			if got := h.Stats().TimeRequests - before; got != 2 {
				t.Errorf("Stats.TimeRequests grew by %d, want 2", got)
			}
		})
	}
}

func TestTopicAuthorisation(t *testing.T) {
	h := startHub(t)
	dev := testDevice()
	c := rawmqtt.DialTCP(t, h.TCPAddr())
	if code := connack(c, credConnect(sign(t, dev, nil))); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}

	subs := []struct {
		filter string
		want   byte
	}{
		{"ABCDEFGHIJ/dev1/#", 1},
		{"ABCDEFGHIJ/dev1/control", 1},
		{"ABCDEFGHIJ/dev1/+", 1},
		{"$sys/operation/result/ABCDEFGHIJ/dev1", 1},
		{"$sys/operation/ABCDEFGHIJ/dev1", 0x80},
		{"$sys/operation/result/ABCDEFGHIJ/dev2", 0x80},
		{"ABCDEFGHIJ/dev2/data", 0x80},
		{"ABCDEFGHIJ/+/data", 0x80},
		{"#", 0x80},
		{"$SYS/#", 0x80},
	}
	for i, s := range subs {
		if got := c.Subscribe(uint16(i+1), s.filter, 1); got != s.want {
			t.Errorf("SUBSCRIBE %q: code %#x, want %#x", s.filter, got, s.want)
		}
	}

	// Own custom topic: acknowledged and delivered back (the device
	// subscribed to ABCDEFGHIJ/dev1/#). The retain flag is dropped.
	c.Send(rawmqtt.Publish("ABCDEFGHIJ/dev1/data", "hello", 1, 5, true))
	if ack := c.Expect(rawmqtt.TypePuback); !bytes.Equal(ack.Body, []byte{0, 5}) {
		t.Fatalf("PUBACK % x", ack.Body)
	}
	// It matches three of the subscriptions above but is delivered once:
	// the next message read must be the one below.
	m := c.ReadPublish()
	if m.Topic != "ABCDEFGHIJ/dev1/data" || m.Payload != "hello" || m.QoS != 1 {
		t.Fatalf("got %+v", m)
	}
	c.Send(rawmqtt.Puback(m.ID))

	// The platform pushes a message to the device.
	if err := h.Publish("ABCDEFGHIJ/dev1/control", []byte("on"), 1); err != nil {
		t.Fatal(err)
	}
	m = c.ReadPublish()
	if m.Topic != "ABCDEFGHIJ/dev1/control" || m.Payload != "on" || m.QoS != 1 {
		t.Fatalf("got %+v", m)
	}
	c.Send(rawmqtt.Puback(m.ID))

	// Nothing was retained.
	c2 := rawmqtt.DialTCP(t, h.TCPAddr()) // takes over the session: c is closed, without DISCONNECT
	if code := connack(c2, credConnect(sign(t, dev, nil))); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	c.ExpectClosed()
	c2.Subscribe(1, "ABCDEFGHIJ/dev1/#", 1)
	c2.ExpectSilence(200 * time.Millisecond)

	// Denied QoS 0 publishes are dropped silently.
	c2.Send(rawmqtt.Publish("ABCDEFGHIJ/dev2/data", "x", 0, 0, false))
	c2.Send(rawmqtt.Publish("$sys/operation/ABCDEFGHIJ/dev2", tencent.TimeRequestPayload, 0, 0, false))
	c2.Send(rawmqtt.Publish("hubsim/x/$sys/operation/ABCDEFGHIJ/dev1", tencent.TimeRequestPayload, 0, 0, false))
	c2.ExpectSilence(200 * time.Millisecond)

	// A denied QoS 1 publish ends the connection (no DISCONNECT packet).
	c2.Send(rawmqtt.Publish("$SYS/operation/ABCDEFGHIJ/dev1", tencent.TimeRequestPayload, 1, 9, false))
	c2.ExpectClosed()
}

func TestWebSocket(t *testing.T) {
	h := startHub(t)
	dev := testDevice()
	if !strings.HasPrefix(h.WebSocketURL(), "ws://127.0.0.1:") || !strings.HasSuffix(h.WebSocketURL(), "/mqtt") {
		t.Fatalf("WebSocketURL = %q", h.WebSocketURL())
	}

	t.Run("connect and time request", func(t *testing.T) {
		c := rawmqtt.DialWS(t, h.WebSocketURL(), nil)
		if code := connack(c, credConnect(sign(t, dev, nil))); code != 0 {
			t.Fatalf("CONNACK code %d, want 0", code)
		}
		c.Subscribe(1, dev.OperationResultTopic(), 0)
		c.Send(rawmqtt.Publish(dev.OperationTopic(), tencent.TimeRequestPayload, 1, 3, false))
		c.Expect(rawmqtt.TypePuback)
		m := c.ReadPublish()
		if m.Topic != dev.OperationResultTopic() || !strings.Contains(m.Payload, `"time":1500000000`) {
			t.Fatalf("got %+v", m)
		}
	})

	t.Run("raw frames", func(t *testing.T) {
		// CONNECT in one binary frame, CONNACK read as one binary message.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, br, _, err := ws.Dialer{Protocols: []string{"mqtt"}}.Dial(ctx, h.WebSocketURL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if br != nil {
			t.Fatal("server sent data before CONNECT")
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := wsutil.WriteClientBinary(conn, credConnect(sign(t, dev, nil))); err != nil {
			t.Fatal(err)
		}
		msg, err := wsutil.ReadServerBinary(conn)
		if err != nil {
			t.Fatal(err)
		}
		if want := []byte{0x20, 0x02, 0x00, 0x00}; !bytes.Equal(msg, want) {
			t.Fatalf("CONNACK % x, want % x", msg, want)
		}
	})

	t.Run("path / and bad password", func(t *testing.T) {
		url := strings.TrimSuffix(h.WebSocketURL(), "/mqtt") + "/"
		c := rawmqtt.DialWS(t, url, nil)
		other := dev
		other.DeviceSecret = "b3RoZXJzZWNyZXQxMjM0NTY="
		if code := connack(c, credConnect(sign(t, other, nil))); code != connackBadUsernameOrPassword {
			t.Fatalf("CONNACK code %d, want %d", code, connackBadUsernameOrPassword)
		}
	})

	t.Run("CONNECT split over frames", func(t *testing.T) {
		c := rawmqtt.DialWS(t, h.WebSocketURL(), nil)
		p := credConnect(sign(t, dev, nil))
		for _, part := range [][]byte{p[:1], p[1:10], p[10:]} {
			c.Send(part)
		}
		if p := c.Expect(rawmqtt.TypeConnack); !bytes.Equal(p.Body, []byte{0, 0}) {
			t.Fatalf("CONNACK % x", p.Body)
		}
	})

	t.Run("text frame closes", func(t *testing.T) {
		c := rawmqtt.DialWS(t, h.WebSocketURL(), nil)
		if err := wsutil.WriteClientText(c.Conn, credConnect(sign(t, dev, nil))); err != nil {
			t.Fatal(err)
		}
		_, err := c.ReadWithin(5 * time.Second)
		var ce wsutil.ClosedError
		if !errors.As(err, &ce) || ce.Code != ws.StatusUnsupportedData {
			t.Fatalf("read after text frame: %v, want close 1003", err)
		}
	})
}

func TestTLS(t *testing.T) {
	pki := testcerts.New(t)
	h, err := Start(testDevice(), &Options{
		Now: func() time.Time { return hubNow },
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.ServerKeyPair}},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer h.Close()
	if !strings.HasPrefix(h.TLSAddr(), "127.0.0.1:") {
		t.Errorf("TLSAddr = %q", h.TLSAddr())
	}
	if u := h.WSSURL(); !strings.HasPrefix(u, "wss://127.0.0.1:") || !strings.HasSuffix(u, "/mqtt") {
		t.Errorf("WSSURL = %q", u)
	}
	dev := testDevice()
	other := dev
	other.DeviceSecret = "b3RoZXJzZWNyZXQxMjM0NTY="

	for _, tr := range []struct {
		name string
		dial func(t *testing.T) *rawmqtt.Client
	}{
		{"tls", func(t *testing.T) *rawmqtt.Client { return rawmqtt.DialTLS(t, h.TLSAddr(), pki.Pool) }},
		{"wss", func(t *testing.T) *rawmqtt.Client { return rawmqtt.DialWS(t, h.WSSURL(), pki.Pool) }},
	} {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.dial(t)
			if code := connack(c, credConnect(sign(t, dev, nil))); code != 0 {
				t.Fatalf("CONNACK code %d, want 0", code)
			}
			c.Subscribe(1, dev.OperationResultTopic(), 1)
			c.Send(rawmqtt.Publish(dev.OperationTopic(), tencent.TimeRequestPayload, 1, 3, false))
			c.Expect(rawmqtt.TypePuback)
			m := c.ReadPublish()
			if m.Topic != dev.OperationResultTopic() || !strings.Contains(m.Payload, `"time":1500000000`) {
				t.Fatalf("got %+v", m)
			}
			c.Send(rawmqtt.Puback(m.ID))

			bad := tr.dial(t)
			if code := connack(bad, credConnect(sign(t, other, nil))); code != connackBadUsernameOrPassword {
				t.Fatalf("CONNACK code %d with a wrong secret, want %d", code, connackBadUsernameOrPassword)
			}
			bad.ExpectClosed()
		})
	}
	if s := h.Stats(); s.Accepted != 2 || s.Refused != 2 || s.TimeRequests != 2 {
		t.Errorf("Stats = %+v, want 2 accepted, 2 refused, 2 time requests", s)
	}
}

func TestStartInvalidDevice(t *testing.T) {
	d := testDevice()
	d.AuthMode = tencent.AuthModeCert
	if _, err := Start(d, nil); !errors.Is(err, tencent.ErrUnsupportedAuthMode) {
		t.Errorf("Start(CERT device) = %v, want ErrUnsupportedAuthMode", err)
	}
	d = testDevice()
	d.DeviceSecret = ""
	if _, err := Start(d, nil); !errors.Is(err, tencent.ErrInvalidDeviceInfo) {
		t.Errorf("Start(no secret) = %v, want ErrInvalidDeviceInfo", err)
	}
}

func TestStartDefaults(t *testing.T) {
	// nil options: real clock, loopback ports.
	h, err := Start(testDevice(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !strings.HasPrefix(h.TCPAddr(), "127.0.0.1:") {
		t.Errorf("TCPAddr = %q", h.TCPAddr())
	}
	if h.TLSAddr() != "" || h.WSSURL() != "" {
		t.Errorf("TLSAddr = %q, WSSURL = %q without Options.TLS, want empty", h.TLSAddr(), h.WSSURL())
	}
	if d := h.Device(); d.ClientID() != "ABCDEFGHIJdev1" {
		t.Errorf("Device() = %+v", d)
	}
	c := rawmqtt.DialTCP(t, h.TCPAddr())
	cr, err := func() (tencent.Credentials, error) { d := testDevice(); return d.Sign(nil) }()
	if err != nil {
		t.Fatal(err)
	}
	if code := connack(c, credConnect(cr)); code != 0 {
		t.Fatalf("CONNACK code %d, want 0", code)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()

	h, err := Start(testDevice(), &Options{Now: func() time.Time { return hubNow }})
	if err != nil {
		t.Fatal(err)
	}
	dev := testDevice()
	// An MQTT session over each transport, a refused one, one that never
	// sends CONNECT, and a WebSocket that never completes its handshake.
	tcp := rawmqtt.DialTCP(t, h.TCPAddr())
	if code := connack(tcp, credConnect(sign(t, dev, nil))); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	tcp.Subscribe(1, dev.OperationResultTopic(), 1)
	wsc := rawmqtt.DialWS(t, h.WebSocketURL(), nil)
	if code := connack(wsc, credConnect(sign(t, dev, nil))); code != 0 { // takes over tcp's session
		t.Fatalf("CONNACK code %d", code)
	}
	idle := rawmqtt.DialTCP(t, h.TCPAddr())
	halfWS, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(h.WebSocketURL(), "/mqtt"), "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	defer halfWS.Close()
	halfWS.Write([]byte("GET /mqtt HTTP/1.1\r\n"))
	time.Sleep(50 * time.Millisecond) // let the hub accept them

	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := h.Publish("ABCDEFGHIJ/dev1/control", nil, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Publish after Close = %v, want net.ErrClosed", err)
	}

	tcp.ExpectClosed()
	idle.ExpectClosed()
	if p, err := wsc.ReadWithin(5 * time.Second); err == nil {
		t.Errorf("WebSocket client got %v after Close, want the connection closed", p)
	}
	halfWS.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := halfWS.Read(make([]byte, 1)); err == nil {
		t.Errorf("half-open WebSocket read %d bytes after Close", n)
	}
	if _, err := net.DialTimeout("tcp", h.TCPAddr(), time.Second); err == nil {
		t.Errorf("TCP listener still accepts after Close")
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
