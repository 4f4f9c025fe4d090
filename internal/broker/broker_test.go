package broker

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
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/testcerts"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// These tests speak MQTT with the tiny codec below, in raw bytes, so that
// they depend on nothing but the broker.

// ---- a tiny MQTT codec ----

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

func packet(first byte, body []byte) []byte {
	b := []byte{first}
	for n := len(body); ; {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// connectPacket is a clean-session CONNECT with keep-alive 0, for MQTT
// 3.1.1 (version 4) or 5, with a user name if not empty.
func connectPacket(version byte, clientID, username string) []byte {
	body := appendString(nil, "MQTT")
	flags := byte(0x02)
	if username != "" {
		flags |= 0x80
	}
	body = append(body, version, flags, 0, 0)
	if version >= 5 {
		body = append(body, 0) // no properties
	}
	body = appendString(body, clientID)
	if username != "" {
		body = appendString(body, username)
	}
	return packet(typeConnect<<4, body)
}

func subscribePacket(version byte, id uint16, filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	if version >= 5 {
		body = append(body, 0)
	}
	body = appendString(body, filter)
	return packet(typeSubscribe<<4|0x02, append(body, qos))
}

func publishPacket(topic, payload string, qos byte, id uint16) []byte {
	body := appendString(nil, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	return packet(typePublish<<4|qos<<1, append(body, payload...))
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

func readPacket(r io.Reader) (rawPacket, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return rawPacket{}, err
	}
	p := rawPacket{typ: b[0] >> 4, flags: b[0] & 0x0f}
	n, mul := 0, 1
	for i := 0; ; i++ {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return rawPacket{}, err
		}
		n += int(b[0]&0x7f) * mul
		mul *= 128
		if b[0]&0x80 == 0 {
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

// ---- transports ----

// rawClient is one MQTT connection driven step by step by a test.
type rawClient struct {
	t       *testing.T
	conn    net.Conn
	r       io.Reader
	w       func([]byte) error
	version byte // 4 (MQTT 3.1.1) unless set
}

func newStreamClient(t *testing.T, conn net.Conn) *rawClient {
	t.Cleanup(func() { conn.Close() })
	return &rawClient{
		t:       t,
		conn:    conn,
		r:       bufio.NewReader(conn),
		w:       func(b []byte) error { _, err := conn.Write(b); return err },
		version: 4,
	}
}

func dialTCP(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return newStreamClient(t, conn)
}

func dialTLS(t *testing.T, addr string, pool *x509.CertPool) *rawClient {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: pool}}
	conn, err := d.Dial("tcp", addr) // verifies the 127.0.0.1 IP address of the certificate
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	return newStreamClient(t, conn)
}

// dialWS connects over WebSocket (ws:// or wss://) with gobwas/ws. Each
// write is one binary message; reads see the binary messages as one byte
// stream.
func dialWS(t *testing.T, url string, pool *x509.CertPool) *rawClient {
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
		w:       func(b []byte) error { return wsutil.WriteClientBinary(conn, b) },
		version: 4,
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

// connect sends CONNECT and returns the CONNACK return or reason code.
func (c *rawClient) connect(clientID, username string) byte {
	c.t.Helper()
	c.send(connectPacket(c.version, clientID, username))
	p := c.expect(typeConnack)
	if len(p.body) < 2 || c.version < 5 && len(p.body) != 2 {
		c.t.Fatalf("CONNACK body % x", p.body)
	}
	return p.body[1]
}

func (c *rawClient) subscribe(id uint16, filter string, qos byte) byte {
	c.t.Helper()
	c.send(subscribePacket(c.version, id, filter, qos))
	p := c.expect(typeSuback)
	if len(p.body) < 3 || binary.BigEndian.Uint16(p.body) != id {
		c.t.Fatalf("SUBACK body % x, want id %d", p.body, id)
	}
	return p.body[len(p.body)-1]
}

type publishMsg struct {
	topic, payload string
	qos            byte
	id             uint16
}

// receive reads a PUBLISH (MQTT 3.1.1) and acknowledges it.
func (c *rawClient) receive() publishMsg {
	c.t.Helper()
	p := c.expect(typePublish)
	n := int(binary.BigEndian.Uint16(p.body))
	m := publishMsg{topic: string(p.body[2 : 2+n]), qos: p.flags >> 1 & 3}
	rest := p.body[2+n:]
	if m.qos > 0 {
		m.id = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
		c.send(pubackPacket(m.id))
	}
	m.payload = string(rest)
	return m
}

// expectClosed checks the server closes the connection without sending
// anything.
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

// waitGoroutines waits until at most n goroutines run.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", got, n, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func start(t *testing.T, o *Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// transports dials each of the server's transports.
func transports(s *Server, pool *x509.CertPool) []struct {
	name string
	dial func(t *testing.T) *rawClient
} {
	return []struct {
		name string
		dial func(t *testing.T) *rawClient
	}{
		{"tcp", func(t *testing.T) *rawClient { return dialTCP(t, s.TCPAddr()) }},
		{"ws", func(t *testing.T) *rawClient { return dialWS(t, s.WebSocketURL(), nil) }},
		{"tls", func(t *testing.T) *rawClient { return dialTLS(t, s.TLSAddr(), pool) }},
		{"wss", func(t *testing.T) *rawClient { return dialWS(t, s.WSSURL(), pool) }},
	}
}

// ---- tests ----

func TestTransports(t *testing.T) {
	pki := testcerts.New(t)
	s := start(t, &Options{
		TLS:          &tls.Config{Certificates: []tls.Certificate{pki.ServerKeyPair}},
		InlineClient: true,
	})
	for _, u := range []string{s.TCPAddr(), s.TLSAddr()} {
		if !strings.HasPrefix(u, "127.0.0.1:") {
			t.Errorf("address %q, want 127.0.0.1:port", u)
		}
	}
	for _, u := range []string{s.WebSocketURL(), s.WSSURL()} {
		if !strings.HasPrefix(u, "ws://127.0.0.1:") && !strings.HasPrefix(u, "wss://127.0.0.1:") || !strings.HasSuffix(u, "/mqtt") {
			t.Errorf("URL %q, want ws[s]://127.0.0.1:port/mqtt", u)
		}
	}

	var subscribers []*rawClient
	for _, tr := range transports(s, pki.Pool) {
		c := tr.dial(t) // lives on after the subtest
		t.Run(tr.name, func(t *testing.T) {
			outer := c.t
			c.t = t
			defer func() { c.t = outer }()
			// CONNECT in raw bytes, CONNACK compared byte for byte.
			c.send(connectPacket(4, "client-"+tr.name, ""))
			c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var connack [4]byte
			if _, err := io.ReadFull(c.r, connack[:]); err != nil {
				t.Fatal(err)
			}
			if want := [4]byte{0x20, 0x02, 0x00, 0x00}; connack != want {
				t.Fatalf("CONNACK % x, want % x", connack, want)
			}

			// SUBSCRIBE, then PUBLISH to the same topic at QoS 0 and 1.
			topic := "rt/" + tr.name
			if code := c.subscribe(1, topic, 1); code != 1 {
				t.Fatalf("SUBACK code %#x, want 1", code)
			}
			c.send(publishPacket(topic, "at most once", 0, 0))
			if m := c.receive(); m != (publishMsg{topic: topic, payload: "at most once"}) {
				t.Fatalf("got %+v", m)
			}
			c.send(publishPacket(topic, "at least once", 1, 7))
			if ack := c.expect(typePuback); !bytes.Equal(ack.body, []byte{0, 7}) {
				t.Fatalf("PUBACK body % x, want 00 07", ack.body)
			}
			if m := c.receive(); m.topic != topic || m.payload != "at least once" || m.qos != 1 {
				t.Fatalf("got %+v", m)
			}

			// A large message spans several TLS records and WebSocket
			// reads.
			big := strings.Repeat("0123456789abcdef", 4096)
			c.send(publishPacket(topic, big, 0, 0))
			if m := c.receive(); m.payload != big {
				t.Fatalf("got %d bytes, want %d", len(m.payload), len(big))
			}

			if code := c.subscribe(2, "all/#", 0); code != 0 {
				t.Fatalf("SUBACK code %#x, want 0", code)
			}
			subscribers = append(subscribers, c)
		})
	}
	if len(subscribers) != 4 {
		t.FailNow()
	}

	// A message from one transport reaches all of them, and so does one
	// from the inline client.
	subscribers[0].send(publishPacket("all/from-tcp", "hi", 0, 0))
	for i, c := range subscribers {
		if m, want := c.receive(), (publishMsg{topic: "all/from-tcp", payload: "hi"}); m != want {
			t.Errorf("subscriber %d got %+v, want %+v", i, m, want)
		}
	}
	if err := s.Mochi().Publish("all/inline", []byte("hello"), false, 0); err != nil {
		t.Fatal(err)
	}
	for i, c := range subscribers {
		if m, want := c.receive(), (publishMsg{topic: "all/inline", payload: "hello"}); m != want {
			t.Errorf("subscriber %d got %+v, want %+v", i, m, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	s := start(t, nil)
	if s.TLSAddr() != "" || s.WSSURL() != "" {
		t.Errorf("TLSAddr %q, WSSURL %q without TLS, want empty", s.TLSAddr(), s.WSSURL())
	}
	if !strings.HasPrefix(s.TCPAddr(), "127.0.0.1:") {
		t.Errorf("TCPAddr = %q", s.TCPAddr())
	}
	if u := s.WebSocketURL(); !strings.HasPrefix(u, "ws://127.0.0.1:") || !strings.HasSuffix(u, "/mqtt") {
		t.Errorf("WebSocketURL = %q", u)
	}
	if err := s.Mochi().Publish("x", nil, false, 0); err == nil {
		t.Error("inline Publish without InlineClient succeeded")
	}

	// Allow-all authentication and authorisation; QoS 2 granted.
	c := dialTCP(t, s.TCPAddr())
	if code := c.connect("any", "anyone"); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if code := c.subscribe(1, "#", 2); code != 2 {
		t.Errorf("SUBACK code %#x, want 2", code)
	}

	// The WebSocket listener accepts any path.
	ws := dialWS(t, strings.TrimSuffix(s.WebSocketURL(), "/mqtt")+"/", nil)
	if code := ws.connect("ws", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
}

func TestCapabilities(t *testing.T) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.MaximumInflight = 0
	s := start(t, &Options{Capabilities: caps})
	if caps.MaximumInflight != 0 {
		t.Error("Start changed the caller's Capabilities")
	}
	c := dialTCP(t, s.TCPAddr())
	if code := c.connect("c", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if code := c.subscribe(1, "a", 2); code != 1 {
		t.Errorf("SUBACK code %#x, want 1 (MaximumQos)", code)
	}
}

// testHook refuses the user name "bad" if auth, and topics under "secret/"
// if acl. Init returns initErr.
type testHook struct {
	mqtt.HookBase
	auth, acl bool
	initErr   error
}

func (h *testHook) ID() string { return "test" }

func (h *testHook) Init(any) error { return h.initErr }

func (h *testHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate && h.auth || b == mqtt.OnACLCheck && h.acl
}

func (h *testHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return string(pk.Connect.Username) != "bad"
}

func (h *testHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return !strings.HasPrefix(topic, "secret/")
}

func TestHooks(t *testing.T) {
	for _, tt := range []struct {
		auth, acl bool
	}{{true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("auth %v acl %v", tt.auth, tt.acl), func(t *testing.T) {
			s := start(t, &Options{Hooks: []mqtt.Hook{&testHook{auth: tt.auth, acl: tt.acl}}})

			bad := dialTCP(t, s.TCPAddr())
			wantCode := byte(0)
			if tt.auth {
				wantCode = 5 // not authorised: mochi's 3.1.1 code for 0x86
			}
			if code := bad.connect("bad", "bad"); code != wantCode {
				t.Errorf("CONNACK code for user bad %d, want %d", code, wantCode)
			}

			c := dialTCP(t, s.TCPAddr())
			if code := c.connect("good", "good"); code != 0 {
				t.Fatalf("CONNACK code %d", code)
			}
			wantSub := byte(0)
			if tt.acl {
				wantSub = 0x80
			}
			if code := c.subscribe(1, "secret/x", 0); code != wantSub {
				t.Errorf("SUBACK code for secret/x %#x, want %#x", code, wantSub)
			}
			if code := c.subscribe(2, "public/x", 0); code != 0 {
				t.Errorf("SUBACK code for public/x %#x, want 0", code)
			}
		})
	}
}

func TestNoDisconnectToV3(t *testing.T) {
	s := start(t, nil)

	// Session takeover: the MQTT 3.1.1 client's connection just closes.
	old := dialTCP(t, s.TCPAddr())
	if code := old.connect("same", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if code := dialTCP(t, s.TCPAddr()).connect("same", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	old.expectClosed()

	// An MQTT 5 client gets DISCONNECT, session taken over (0x8E).
	old5 := dialTCP(t, s.TCPAddr())
	old5.version = 5
	if code := old5.connect("same5", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	new5 := dialTCP(t, s.TCPAddr())
	new5.version = 5
	if code := new5.connect("same5", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if p := old5.expect(typeDisconnect); len(p.body) == 0 || p.body[0] != 0x8E {
		t.Fatalf("DISCONNECT body % x, want reason code 0x8e", p.body)
	}
}

// TestReconnectSameID: a client that reconnects with the same client ID,
// right after its connection dropped or while it is still open, keeps its
// new subscription (mochi alone races there; see takeoverHook).
func TestReconnectSameID(t *testing.T) {
	s := start(t, &Options{InlineClient: true})
	for i := range 100 {
		old := dialTCP(t, s.TCPAddr())
		if code := old.connect("same", ""); code != 0 {
			t.Fatalf("CONNACK code %d", code)
		}
		old.subscribe(1, "t", 0)
		live := i%2 == 1
		if !live {
			old.conn.Close()
		}

		c := dialTCP(t, s.TCPAddr())
		if code := c.connect("same", ""); code != 0 {
			t.Fatalf("CONNACK code %d", code)
		}
		c.subscribe(1, "t", 0)
		if err := s.Mochi().Publish("t", []byte{byte(i)}, false, 0); err != nil {
			t.Fatal(err)
		}
		if m := c.receive(); m.payload != string([]byte{byte(i)}) {
			t.Fatalf("round %d: got %+v", i, m)
		}
		if live {
			old.expectClosed()
		}
		old.conn.Close()
		c.conn.Close()
	}
}

func TestStartError(t *testing.T) {
	before := runtime.NumGoroutine()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := Start(&Options{WebSocketAddr: busy.Addr().String()}); err == nil || !strings.Contains(err.Error(), "websocket listener") {
		t.Fatalf("Start on a busy port: %v, want a websocket listener error", err)
	}
	errInit := errors.New("init failed")
	if _, err := Start(&Options{Hooks: []mqtt.Hook{&testHook{initErr: errInit}}}); !errors.Is(err, errInit) {
		t.Fatalf("Start with a failing hook: %v, want %v", err, errInit)
	}
	busy.Close()
	waitGoroutines(t, before)
}

// recordHandler keeps the records it handles.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}

func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestLogger(t *testing.T) {
	rec := new(recordHandler)
	s := start(t, &Options{Logger: slog.New(rec)})
	c := dialTCP(t, s.TCPAddr())
	c.connect("c", "")
	c.conn.Close()
	// A mochi warning: a client sending garbage instead of CONNECT.
	dialTCP(t, s.TCPAddr()).send([]byte{0xff, 0x00})
	time.Sleep(50 * time.Millisecond)
	s.Close()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var debug int
	for _, r := range rec.records {
		switch {
		case r.Level >= slog.LevelWarn:
		case r.Level == slog.LevelDebug && strings.HasPrefix(r.Message, "broker: "):
			debug++
		default:
			t.Errorf("logged %v %q; want mochi's Info messages dropped", r.Level, r.Message)
		}
	}
	if debug == 0 {
		t.Error("no connection events logged")
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	pki := testcerts.New(t)
	before := runtime.NumGoroutine()

	s, err := Start(&Options{
		TLS:          &tls.Config{Certificates: []tls.Certificate{pki.ServerKeyPair}},
		InlineClient: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	// An MQTT session over each transport, an MQTT 5 session, one that
	// never sends CONNECT, a WebSocket that never completes its handshake
	// and a TLS connection that never starts its handshake.
	var sessions []*rawClient
	for _, tr := range transports(s, pki.Pool) {
		c := tr.dial(t)
		if code := c.connect("c-"+tr.name, ""); code != 0 {
			t.Fatalf("%s: CONNACK code %d", tr.name, code)
		}
		c.subscribe(1, "a/#", 1)
		sessions = append(sessions, c)
	}
	v5 := dialTCP(t, s.TCPAddr())
	v5.version = 5
	if code := v5.connect("v5", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	idle := dialTCP(t, s.TCPAddr())
	halfWS := dialTCP(t, strings.TrimSuffix(strings.TrimPrefix(s.WebSocketURL(), "ws://"), "/mqtt"))
	halfWS.send([]byte("GET /mqtt HTTP/1.1\r\n"))
	halfTLS := dialTCP(t, s.TLSAddr())
	time.Sleep(50 * time.Millisecond) // let the broker accept them

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	for _, c := range sessions {
		c.expectClosed()
	}
	if p := v5.expect(typeDisconnect); len(p.body) == 0 || p.body[0] != 0x8B {
		t.Errorf("MQTT 5 client got DISCONNECT % x, want reason code 0x8b (server shutting down)", p.body)
	}
	for _, c := range []*rawClient{idle, halfWS, halfTLS} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.conn.Read(make([]byte, 1)); err == nil {
			t.Errorf("read %d bytes after Close, want the connection closed", n)
		}
	}
	for _, addr := range []string{s.TCPAddr(), s.TLSAddr()} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("listener %s still accepts after Close", addr)
		}
	}

	for _, c := range append(sessions, v5, idle, halfWS, halfTLS) {
		c.conn.Close()
	}
	waitGoroutines(t, before)
}
