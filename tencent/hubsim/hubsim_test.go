package hubsim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/testcerts"
	"github.com/devicemq/mqtt/tencent"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// These tests speak MQTT 3.1.1 with the tiny codec below, not with the
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

// ---- a tiny MQTT 3.1.1 codec ----

const (
	typeConnect    = 1
	typeConnack    = 2
	typePublish    = 3
	typePuback     = 4
	typeSubscribe  = 8
	typeSuback     = 9
	typeDisconnect = 14
)

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendRemaining(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func packet(first byte, body []byte) []byte {
	return append(appendRemaining([]byte{first}, len(body)), body...)
}

type connectOpts struct {
	clientID string
	username string // sent if non-empty
	password []byte // sent if non-nil
	mqtt31   bool   // protocol name "MQIsdp", level 3
}

func connectPacket(o connectOpts) []byte {
	var body []byte
	if o.mqtt31 {
		body = appendString(body, "MQIsdp")
		body = append(body, 3)
	} else {
		body = appendString(body, "MQTT")
		body = append(body, 4)
	}
	flags := byte(0x02) // clean session
	if o.username != "" {
		flags |= 0x80
	}
	if o.password != nil {
		flags |= 0x40
	}
	body = append(body, flags, 0, 0) // keep alive 0: no timeout
	body = appendString(body, o.clientID)
	if o.username != "" {
		body = appendString(body, o.username)
	}
	if o.password != nil {
		body = appendString(body, string(o.password))
	}
	return packet(typeConnect<<4, body)
}

func credConnect(c tencent.Credentials) []byte {
	return connectPacket(connectOpts{clientID: c.ClientID, username: c.Username, password: c.Password})
}

func subscribePacket(id uint16, filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = appendString(body, filter)
	return packet(typeSubscribe<<4|0x02, append(body, qos))
}

func publishPacket(topic string, payload string, qos byte, id uint16, retain bool) []byte {
	first := byte(typePublish<<4) | qos<<1
	if retain {
		first |= 1
	}
	body := appendString(nil, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	return packet(first, append(body, payload...))
}

func pubackPacket(id uint16) []byte {
	return packet(typePuback<<4, binary.BigEndian.AppendUint16(nil, id))
}

type rawPacket struct {
	typ   byte
	flags byte
	body  []byte
}

func (p rawPacket) String() string {
	return fmt.Sprintf("type %d flags %#x body % x", p.typ, p.flags, p.body)
}

type publishMsg struct {
	topic   string
	payload string
	qos     byte
	id      uint16
}

func (p rawPacket) publish(t *testing.T) publishMsg {
	t.Helper()
	if p.typ != typePublish || len(p.body) < 2 {
		t.Fatalf("want PUBLISH, got %v", p)
	}
	n := int(binary.BigEndian.Uint16(p.body))
	m := publishMsg{topic: string(p.body[2 : 2+n]), qos: p.flags >> 1 & 3}
	rest := p.body[2+n:]
	if m.qos > 0 {
		m.id = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	m.payload = string(rest)
	return m
}

func readPacket(r io.Reader) (rawPacket, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return rawPacket{}, err
	}
	p := rawPacket{typ: b[0] >> 4, flags: b[0] & 0x0f}
	n, mul := 0, 1
	for i := 0; ; i++ {
		var d [1]byte
		if _, err := io.ReadFull(r, d[:]); err != nil {
			return rawPacket{}, err
		}
		n += int(d[0]&0x7f) * mul
		mul *= 128
		if d[0]&0x80 == 0 {
			break
		}
		if i == 3 {
			return rawPacket{}, errors.New("bad remaining length")
		}
	}
	p.body = make([]byte, n)
	_, err := io.ReadFull(r, p.body)
	return p, err
}

// rawClient is one MQTT connection driven step by step by a test.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
	w    func([]byte) error
}

func dialTCP(t *testing.T, h *Hub) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.TCPAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{
		t:    t,
		conn: conn,
		r:    bufio.NewReader(conn),
		w:    func(b []byte) error { _, err := conn.Write(b); return err },
	}
}

func dialTLS(t *testing.T, addr string, pool *x509.CertPool) *rawClient {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: pool}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{
		t:    t,
		conn: conn,
		r:    bufio.NewReader(conn),
		w:    func(b []byte) error { _, err := conn.Write(b); return err },
	}
}

// dialWS connects over WebSocket with gobwas/ws. Each write is one binary
// message; reads see the binary messages as one byte stream.
func dialWS(t *testing.T, url string) *rawClient {
	t.Helper()
	return dialWSS(t, url, nil)
}

// dialWSS is dialWS for ws:// or wss:// URLs, trusting the CAs in pool
// (the system's if nil).
func dialWSS(t *testing.T, url string, pool *x509.CertPool) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := ws.Dialer{Protocols: []string{"mqtt"}}
	if pool != nil {
		d.TLSConfig = &tls.Config{RootCAs: pool}
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	if hs.Protocol != "mqtt" {
		t.Fatalf("subprotocol %q, want mqtt", hs.Protocol)
	}
	src := io.Reader(conn)
	if br != nil {
		src = br
	}
	return &rawClient{
		t:    t,
		conn: conn,
		r: &wsStream{rw: struct {
			io.Reader
			io.Writer
		}{src, conn}},
		w: func(b []byte) error { return wsutil.WriteClientBinary(conn, b) },
	}
}

// wsStream concatenates the payloads of binary messages from the server.
type wsStream struct {
	rw  io.ReadWriter
	buf []byte
}

func (s *wsStream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		data, op, err := wsutil.ReadServerData(s.rw)
		if err != nil {
			return 0, err
		}
		if op != ws.OpBinary {
			return 0, fmt.Errorf("server sent opcode %v", op)
		}
		s.buf = data
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func (c *rawClient) send(b []byte) {
	c.t.Helper()
	if err := c.w(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawClient) read() rawPacket {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := readPacket(c.r)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

func (c *rawClient) expect(typ byte) rawPacket {
	c.t.Helper()
	p := c.read()
	if p.typ != typ {
		c.t.Fatalf("got %v, want packet type %d", p, typ)
	}
	return p
}

// connack sends CONNECT and returns the CONNACK return code.
func (c *rawClient) connack(connect []byte) byte {
	c.t.Helper()
	c.send(connect)
	p := c.expect(typeConnack)
	if len(p.body) != 2 {
		c.t.Fatalf("CONNACK body % x, want 2 bytes", p.body)
	}
	if p.body[0] != 0 {
		c.t.Errorf("CONNACK session present flag %#x, want 0", p.body[0])
	}
	return p.body[1]
}

// expectClosed checks the server closes the connection without sending
// anything (in particular no DISCONNECT, which 3.1.1 servers must not send).
func (c *rawClient) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := readPacket(c.r)
	if err == nil {
		c.t.Fatalf("got %v, want the connection closed", p)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open: %v", err)
	}
}

// expectSilence checks nothing arrives for a short while.
func (c *rawClient) expectSilence(d time.Duration) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	p, err := readPacket(c.r)
	if err == nil {
		c.t.Fatalf("got %v, want nothing", p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("read: %v, want a timeout", err)
	}
}

func (c *rawClient) subscribe(id uint16, filter string, qos byte) byte {
	c.t.Helper()
	c.send(subscribePacket(id, filter, qos))
	p := c.expect(typeSuback)
	if len(p.body) != 3 || binary.BigEndian.Uint16(p.body) != id {
		c.t.Fatalf("SUBACK body % x, want id %d and one code", p.body, id)
	}
	return p.body[2]
}

// ---- tests ----

func TestConnectAccepted(t *testing.T) {
	h := startHub(t)
	for _, method := range []tencent.SignMethod{tencent.HMACSHA256, tencent.HMACSHA1} {
		c := dialTCP(t, h)
		if code := c.connack(credConnect(sign(t, testDevice(), &tencent.SignOptions{Method: method}))); code != 0 {
			t.Fatalf("%v: CONNACK code %d, want 0", method, code)
		}
	}

	// Signed with the hub's clock: long expired by the real clock, so this
	// shows the hub checks expiry against Options.Now.
	if hubNow.Add(time.Hour).After(time.Now()) {
		t.Fatal("hubNow must be in the past")
	}

	// MQTT 3.1 (as the Python SDK sends) and the C SDK's appid.
	c := dialTCP(t, h)
	cr := sign(t, testDevice(), &tencent.SignOptions{AppID: tencent.EmbeddedSDKAppID, Method: tencent.HMACSHA1})
	if code := c.connack(connectPacket(connectOpts{clientID: cr.ClientID, username: cr.Username, password: cr.Password, mqtt31: true})); code != 0 {
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
		{"no password", connectPacket(connectOpts{clientID: good.ClientID, username: good.Username})},
		{"no user name or password", connectPacket(connectOpts{clientID: good.ClientID})},
		{"Base64 text as key", credConnect(tamper(good, func(c *tencent.Credentials) {
			c.Password = []byte(strings.Repeat("0", 64) + ";hmacsha256")
		}))},
		{"MQTT 3.1, expired", connectPacket(connectOpts{clientID: expired.ClientID, username: expired.Username, password: expired.Password, mqtt31: true})},
		{"expired by a fraction of a second", credConnect(fraction)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTCP(t, h)
			if code := c.connack(tt.connect); code != connackBadUsernameOrPassword {
				t.Fatalf("CONNACK code %d, want %d (bad user name or password)", code, connackBadUsernameOrPassword)
			}
			c.expectClosed()
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
			c := dialTCP(t, h)
			if code := c.connack(credConnect(sign(t, dev, nil))); code != 0 {
				t.Fatalf("CONNACK code %d", code)
			}
			if got := c.subscribe(1, dev.OperationResultTopic(), subQoS); got != subQoS {
				t.Fatalf("SUBACK code %#x, want %d", got, subQoS)
			}

			checkReply := func(sentAt time.Time) {
				t.Helper()
				m := c.read().publish(t)
				if m.topic != "$sys/operation/result/ABCDEFGHIJ/dev1" || m.payload != wantReply {
					t.Fatalf("reply %q on %q, want %s on the result topic", m.payload, m.topic, wantReply)
				}
				if m.qos != subQoS {
					t.Errorf("reply QoS %d, want the subscription's %d", m.qos, subQoS)
				}
				if m.qos == 1 {
					c.send(pubackPacket(m.id))
				}
				got, err := tencent.ParseTimeReply([]byte(m.payload), sentAt, sentAt)
				if err != nil || !got.Equal(hubNow) {
					t.Errorf("ParseTimeReply = %v, %v; want %v", got, err, hubNow)
				}
			}

			// QoS 0 request.
			before := h.Stats().TimeRequests
			c.send(publishPacket(dev.OperationTopic(), tencent.TimeRequestPayload, 0, 0, false))
			checkReply(time.Now())

			// QoS 1 request: PUBACK first, then the reply.
			c.send(publishPacket(dev.OperationTopic(), tencent.TimeRequestPayload, 1, 77, false))
			ack := c.expect(typePuback)
			if !bytes.Equal(ack.body, []byte{0, 77}) {
				t.Fatalf("PUBACK body % x, want 00 4d", ack.body)
			}
			checkReply(time.Now())

			// Something else on the operation topic is acknowledged and
			// ignored; the request is never forwarded to subscribers.
			c.send(publishPacket(dev.OperationTopic(), `{"type":"ssh","switch":1}`, 1, 78, false))
			c.expect(typePuback)
			c.send(publishPacket(dev.OperationTopic(), `not json`, 0, 0, false))
			c.expectSilence(200 * time.Millisecond)

			if got := h.Stats().TimeRequests - before; got != 2 {
				t.Errorf("Stats.TimeRequests grew by %d, want 2", got)
			}
		})
	}
}

func TestTopicAuthorisation(t *testing.T) {
	h := startHub(t)
	dev := testDevice()
	c := dialTCP(t, h)
	if code := c.connack(credConnect(sign(t, dev, nil))); code != 0 {
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
		if got := c.subscribe(uint16(i+1), s.filter, 1); got != s.want {
			t.Errorf("SUBSCRIBE %q: code %#x, want %#x", s.filter, got, s.want)
		}
	}

	// Own custom topic: acknowledged and delivered back (the device
	// subscribed to ABCDEFGHIJ/dev1/#). The retain flag is dropped.
	c.send(publishPacket("ABCDEFGHIJ/dev1/data", "hello", 1, 5, true))
	if ack := c.expect(typePuback); !bytes.Equal(ack.body, []byte{0, 5}) {
		t.Fatalf("PUBACK % x", ack.body)
	}
	// It matches three of the subscriptions above but is delivered once:
	// the next message read must be the one below.
	m := c.read().publish(t)
	if m.topic != "ABCDEFGHIJ/dev1/data" || m.payload != "hello" || m.qos != 1 {
		t.Fatalf("got %+v", m)
	}
	c.send(pubackPacket(m.id))

	// The platform pushes a message to the device.
	if err := h.Publish("ABCDEFGHIJ/dev1/control", []byte("on"), 1); err != nil {
		t.Fatal(err)
	}
	m = c.read().publish(t)
	if m.topic != "ABCDEFGHIJ/dev1/control" || m.payload != "on" || m.qos != 1 {
		t.Fatalf("got %+v", m)
	}
	c.send(pubackPacket(m.id))

	// Nothing was retained.
	c2 := dialTCP(t, h) // takes over the session: c is closed, without DISCONNECT
	if code := c2.connack(credConnect(sign(t, dev, nil))); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	c.expectClosed()
	c2.subscribe(1, "ABCDEFGHIJ/dev1/#", 1)
	c2.expectSilence(200 * time.Millisecond)

	// Denied QoS 0 publishes are dropped silently.
	c2.send(publishPacket("ABCDEFGHIJ/dev2/data", "x", 0, 0, false))
	c2.send(publishPacket("$sys/operation/ABCDEFGHIJ/dev2", tencent.TimeRequestPayload, 0, 0, false))
	c2.send(publishPacket("hubsim/x/$sys/operation/ABCDEFGHIJ/dev1", tencent.TimeRequestPayload, 0, 0, false))
	c2.expectSilence(200 * time.Millisecond)

	// A denied QoS 1 publish ends the connection (no DISCONNECT packet).
	c2.send(publishPacket("$SYS/operation/ABCDEFGHIJ/dev1", tencent.TimeRequestPayload, 1, 9, false))
	c2.expectClosed()
}

func TestWebSocket(t *testing.T) {
	h := startHub(t)
	dev := testDevice()
	if !strings.HasPrefix(h.WebSocketURL(), "ws://127.0.0.1:") || !strings.HasSuffix(h.WebSocketURL(), "/mqtt") {
		t.Fatalf("WebSocketURL = %q", h.WebSocketURL())
	}

	t.Run("connect and time request", func(t *testing.T) {
		c := dialWS(t, h.WebSocketURL())
		if code := c.connack(credConnect(sign(t, dev, nil))); code != 0 {
			t.Fatalf("CONNACK code %d, want 0", code)
		}
		c.subscribe(1, dev.OperationResultTopic(), 0)
		c.send(publishPacket(dev.OperationTopic(), tencent.TimeRequestPayload, 1, 3, false))
		c.expect(typePuback)
		m := c.read().publish(t)
		if m.topic != dev.OperationResultTopic() || !strings.Contains(m.payload, `"time":1500000000`) {
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
		c := dialWS(t, url)
		other := dev
		other.DeviceSecret = "b3RoZXJzZWNyZXQxMjM0NTY="
		if code := c.connack(credConnect(sign(t, other, nil))); code != connackBadUsernameOrPassword {
			t.Fatalf("CONNACK code %d, want %d", code, connackBadUsernameOrPassword)
		}
	})

	t.Run("CONNECT split over frames", func(t *testing.T) {
		c := dialWS(t, h.WebSocketURL())
		p := credConnect(sign(t, dev, nil))
		for _, part := range [][]byte{p[:1], p[1:10], p[10:]} {
			c.send(part)
		}
		if p := c.expect(typeConnack); !bytes.Equal(p.body, []byte{0, 0}) {
			t.Fatalf("CONNACK % x", p.body)
		}
	})

	t.Run("text frame closes", func(t *testing.T) {
		c := dialWS(t, h.WebSocketURL())
		if err := wsutil.WriteClientText(c.conn, credConnect(sign(t, dev, nil))); err != nil {
			t.Fatal(err)
		}
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := readPacket(c.r)
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
		dial func(t *testing.T) *rawClient
	}{
		{"tls", func(t *testing.T) *rawClient { return dialTLS(t, h.TLSAddr(), pki.Pool) }},
		{"wss", func(t *testing.T) *rawClient { return dialWSS(t, h.WSSURL(), pki.Pool) }},
	} {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.dial(t)
			if code := c.connack(credConnect(sign(t, dev, nil))); code != 0 {
				t.Fatalf("CONNACK code %d, want 0", code)
			}
			c.subscribe(1, dev.OperationResultTopic(), 1)
			c.send(publishPacket(dev.OperationTopic(), tencent.TimeRequestPayload, 1, 3, false))
			c.expect(typePuback)
			m := c.read().publish(t)
			if m.topic != dev.OperationResultTopic() || !strings.Contains(m.payload, `"time":1500000000`) {
				t.Fatalf("got %+v", m)
			}
			c.send(pubackPacket(m.id))

			bad := tr.dial(t)
			if code := bad.connack(credConnect(sign(t, other, nil))); code != connackBadUsernameOrPassword {
				t.Fatalf("CONNACK code %d with a wrong secret, want %d", code, connackBadUsernameOrPassword)
			}
			bad.expectClosed()
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
	c := dialTCP(t, h)
	cr, err := func() (tencent.Credentials, error) { d := testDevice(); return d.Sign(nil) }()
	if err != nil {
		t.Fatal(err)
	}
	if code := c.connack(credConnect(cr)); code != 0 {
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
	tcp := dialTCP(t, h)
	if code := tcp.connack(credConnect(sign(t, dev, nil))); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	tcp.subscribe(1, dev.OperationResultTopic(), 1)
	wsc := dialWS(t, h.WebSocketURL())
	if code := wsc.connack(credConnect(sign(t, dev, nil))); code != 0 { // takes over tcp's session
		t.Fatalf("CONNACK code %d", code)
	}
	idle := dialTCP(t, h)
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

	tcp.expectClosed()
	idle.expectClosed()
	wsc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, err := readPacket(wsc.r); err == nil {
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
