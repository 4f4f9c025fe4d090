package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/devicemq/mqtt/internal/rawmqtt"
	"github.com/devicemq/mqtt/internal/testcerts"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// These tests speak MQTT in raw bytes with rawmqtt, so that they depend on
// nothing but the broker.

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
	dial func(t *testing.T) *rawmqtt.Client
} {
	return []struct {
		name string
		dial func(t *testing.T) *rawmqtt.Client
	}{
		{"tcp", func(t *testing.T) *rawmqtt.Client { return rawmqtt.DialTCP(t, s.TCPAddr()) }},
		{"ws", func(t *testing.T) *rawmqtt.Client { return rawmqtt.DialWS(t, s.WebSocketURL(), nil) }},
		{"tls", func(t *testing.T) *rawmqtt.Client { return rawmqtt.DialTLS(t, s.TLSAddr(), pool) }},
		{"wss", func(t *testing.T) *rawmqtt.Client { return rawmqtt.DialWS(t, s.WSSURL(), pool) }},
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

	var subscribers []*rawmqtt.Client
	for _, tr := range transports(s, pki.Pool) {
		c := tr.dial(t) // lives on after the subtest
		t.Run(tr.name, func(t *testing.T) {
			outer := c.T
			c.T = t
			defer func() { c.T = outer }()
			// CONNECT in raw bytes, CONNACK compared byte for byte.
			c.Send(rawmqtt.Connect(rawmqtt.ConnectOpts{ClientID: "client-" + tr.name}))
			c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var connack [4]byte
			if _, err := io.ReadFull(c.R, connack[:]); err != nil {
				t.Fatal(err)
			}
			if want := [4]byte{0x20, 0x02, 0x00, 0x00}; connack != want {
				t.Fatalf("CONNACK % x, want % x", connack, want)
			}

			// SUBSCRIBE, then PUBLISH to the same topic at QoS 0 and 1.
			topic := "rt/" + tr.name
			if code := c.Subscribe(1, topic, 1); code != 1 {
				t.Fatalf("SUBACK code %#x, want 1", code)
			}
			c.Send(rawmqtt.Publish(topic, "at most once", 0, 0, false))
			if m := c.Receive(); m != (rawmqtt.Message{Topic: topic, Payload: "at most once"}) {
				t.Fatalf("got %+v", m)
			}
			c.Send(rawmqtt.Publish(topic, "at least once", 1, 7, false))
			if ack := c.Expect(rawmqtt.TypePuback); !bytes.Equal(ack.Body, []byte{0, 7}) {
				t.Fatalf("PUBACK body % x, want 00 07", ack.Body)
			}
			if m := c.Receive(); m.Topic != topic || m.Payload != "at least once" || m.QoS != 1 {
				t.Fatalf("got %+v", m)
			}

			// A large message spans several TLS records and WebSocket
			// reads.
			big := strings.Repeat("0123456789abcdef", 4096)
			c.Send(rawmqtt.Publish(topic, big, 0, 0, false))
			if m := c.Receive(); m.Payload != big {
				t.Fatalf("got %d bytes, want %d", len(m.Payload), len(big))
			}

			if code := c.Subscribe(2, "all/#", 0); code != 0 {
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
	subscribers[0].Send(rawmqtt.Publish("all/from-tcp", "hi", 0, 0, false))
	for i, c := range subscribers {
		if m, want := c.Receive(), (rawmqtt.Message{Topic: "all/from-tcp", Payload: "hi"}); m != want {
			t.Errorf("subscriber %d got %+v, want %+v", i, m, want)
		}
	}
	if err := s.Mochi().Publish("all/inline", []byte("hello"), false, 0); err != nil {
		t.Fatal(err)
	}
	for i, c := range subscribers {
		if m, want := c.Receive(), (rawmqtt.Message{Topic: "all/inline", Payload: "hello"}); m != want {
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
	c := rawmqtt.DialTCP(t, s.TCPAddr())
	if code := c.Connect("any", "anyone"); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if code := c.Subscribe(1, "#", 2); code != 2 {
		t.Errorf("SUBACK code %#x, want 2", code)
	}

	// The WebSocket listener accepts any path.
	ws := rawmqtt.DialWS(t, strings.TrimSuffix(s.WebSocketURL(), "/mqtt")+"/", nil)
	if code := ws.Connect("ws", ""); code != 0 {
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
	c := rawmqtt.DialTCP(t, s.TCPAddr())
	if code := c.Connect("c", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if code := c.Subscribe(1, "a", 2); code != 1 {
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

			bad := rawmqtt.DialTCP(t, s.TCPAddr())
			wantCode := byte(0)
			if tt.auth {
				wantCode = 5 // not authorised: mochi's 3.1.1 code for 0x86
			}
			if code := bad.Connect("bad", "bad"); code != wantCode {
				t.Errorf("CONNACK code for user bad %d, want %d", code, wantCode)
			}

			c := rawmqtt.DialTCP(t, s.TCPAddr())
			if code := c.Connect("good", "good"); code != 0 {
				t.Fatalf("CONNACK code %d", code)
			}
			wantSub := byte(0)
			if tt.acl {
				wantSub = 0x80
			}
			if code := c.Subscribe(1, "secret/x", 0); code != wantSub {
				t.Errorf("SUBACK code for secret/x %#x, want %#x", code, wantSub)
			}
			if code := c.Subscribe(2, "public/x", 0); code != 0 {
				t.Errorf("SUBACK code for public/x %#x, want 0", code)
			}
		})
	}
}

func TestNoDisconnectToV3(t *testing.T) {
	s := start(t, nil)

	// Session takeover: the MQTT 3.1.1 client's connection just closes.
	old := rawmqtt.DialTCP(t, s.TCPAddr())
	if code := old.Connect("same", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if code := rawmqtt.DialTCP(t, s.TCPAddr()).Connect("same", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	old.ExpectClosed()

	// An MQTT 5 client gets DISCONNECT, session taken over (0x8E).
	old5 := rawmqtt.DialTCP(t, s.TCPAddr())
	old5.Version = 5
	if code := old5.Connect("same5", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	new5 := rawmqtt.DialTCP(t, s.TCPAddr())
	new5.Version = 5
	if code := new5.Connect("same5", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	if p := old5.Expect(rawmqtt.TypeDisconnect); len(p.Body) == 0 || p.Body[0] != 0x8E {
		t.Fatalf("DISCONNECT body % x, want reason code 0x8e", p.Body)
	}
}

// TestReconnectSameID: a client that reconnects with the same client ID,
// right after its connection dropped or while it is still open, keeps its
// new subscription (mochi alone races there; see takeoverHook).
func TestReconnectSameID(t *testing.T) {
	s := start(t, &Options{InlineClient: true})
	for i := range 100 {
		old := rawmqtt.DialTCP(t, s.TCPAddr())
		if code := old.Connect("same", ""); code != 0 {
			t.Fatalf("CONNACK code %d", code)
		}
		old.Subscribe(1, "t", 0)
		live := i%2 == 1
		if !live {
			old.Conn.Close()
		}

		c := rawmqtt.DialTCP(t, s.TCPAddr())
		if code := c.Connect("same", ""); code != 0 {
			t.Fatalf("CONNACK code %d", code)
		}
		c.Subscribe(1, "t", 0)
		if err := s.Mochi().Publish("t", []byte{byte(i)}, false, 0); err != nil {
			t.Fatal(err)
		}
		if m := c.Receive(); m.Payload != string([]byte{byte(i)}) {
			t.Fatalf("round %d: got %+v", i, m)
		}
		if live {
			old.ExpectClosed()
		}
		old.Conn.Close()
		c.Conn.Close()
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
	c := rawmqtt.DialTCP(t, s.TCPAddr())
	c.Connect("c", "")
	c.Conn.Close()
	// A mochi warning: a client sending garbage instead of CONNECT.
	rawmqtt.DialTCP(t, s.TCPAddr()).Send([]byte{0xff, 0x00})
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
	var sessions []*rawmqtt.Client
	for _, tr := range transports(s, pki.Pool) {
		c := tr.dial(t)
		if code := c.Connect("c-"+tr.name, ""); code != 0 {
			t.Fatalf("%s: CONNACK code %d", tr.name, code)
		}
		c.Subscribe(1, "a/#", 1)
		sessions = append(sessions, c)
	}
	v5 := rawmqtt.DialTCP(t, s.TCPAddr())
	v5.Version = 5
	if code := v5.Connect("v5", ""); code != 0 {
		t.Fatalf("CONNACK code %d", code)
	}
	idle := rawmqtt.DialTCP(t, s.TCPAddr())
	halfWS := rawmqtt.DialTCP(t, strings.TrimSuffix(strings.TrimPrefix(s.WebSocketURL(), "ws://"), "/mqtt"))
	halfWS.Send([]byte("GET /mqtt HTTP/1.1\r\n"))
	halfTLS := rawmqtt.DialTCP(t, s.TLSAddr())
	time.Sleep(50 * time.Millisecond) // let the broker accept them

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	for _, c := range sessions {
		c.ExpectClosed()
	}
	if p := v5.Expect(rawmqtt.TypeDisconnect); len(p.Body) == 0 || p.Body[0] != 0x8B {
		t.Errorf("MQTT 5 client got DISCONNECT % x, want reason code 0x8b (server shutting down)", p.Body)
	}
	for _, c := range []*rawmqtt.Client{idle, halfWS, halfTLS} {
		c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Conn.Read(make([]byte, 1)); err == nil {
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
		c.Conn.Close()
	}
	waitGoroutines(t, before)
}

// TestCloseRacingDisconnects: Close while clients disconnect on their own
// returns. mochi v2.7.9's own client teardown on Close takes its client
// map's read lock twice and deadlocks when a disconnecting client's
// removal waits for the write lock in between; Listener.Close does the
// teardown without that. The race is narrow, so it is tried many times.
func TestCloseRacingDisconnects(t *testing.T) {
	for i := range 1000 {
		s, err := Start(nil)
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		for j := range 8 {
			c := rawmqtt.DialTCP(t, s.TCPAddr())
			if code := c.Connect(fmt.Sprintf("race-%d-%d", i, j), ""); code != 0 {
				t.Fatalf("CONNACK code %d", code)
			}
			conns = append(conns, c.Conn)
		}
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { c.Close() })
		}
		closed := make(chan struct{})
		go func() {
			s.Close()
			close(closed)
		}()
		wg.Wait()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("round %d: Close still running after 10 s:\n%s", i, buf)
		}
	}
}
