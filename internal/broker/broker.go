// Package broker runs an in-process MQTT broker for tests and benchmarks,
// built on the mochi-mqtt broker (github.com/mochi-mqtt/server/v2): Start
// serves MQTT over TCP and WebSocket, and over TLS and WebSocket over TLS
// when given a server certificate, on 127.0.0.1 ports chosen by the kernel.
//
// Listener, the mochi listener it uses, is exported for brokers assembled
// by hand (package tencent/hubsim uses Start).
package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Options configure a Server. A nil *Options means all defaults.
type Options struct {
	// Logger receives the broker's warnings and errors (mochi's, at Warn
	// level and above; mochi's Info messages are dropped) and the
	// listeners' connection events at Debug level. Nil discards everything.
	Logger *slog.Logger

	// TLS, if set, holds the server certificate: the broker then also
	// serves MQTT over TLS and over WebSocket over TLS. The config is
	// cloned; set ClientAuth and ClientCAs in it to ask for client
	// certificates.
	TLS *tls.Config

	// Hooks are extra mochi hooks, added in order with a nil config (so
	// mochi calls Init(nil)) before the broker's own. Unless one of them
	// provides mqtt.OnConnectAuthenticate, every CONNECT is accepted;
	// unless one of them provides mqtt.OnACLCheck, every topic is allowed.
	Hooks []mqtt.Hook

	// InlineClient enables mochi's inline client, i.e. publishing with
	// Mochi().Publish.
	InlineClient bool

	// Capabilities, if set, replaces mochi's defaults
	// (mqtt.NewDefaultServerCapabilities, whose MaximumQos is 2); start
	// from those defaults and change what you need, for example
	// MaximumQos. It is copied.
	Capabilities *mqtt.Capabilities

	// TCPAddr and WebSocketAddr are the addresses of the MQTT-over-TCP and
	// MQTT-over-WebSocket listeners. Empty means "127.0.0.1:0" (a port
	// chosen by the kernel). The TLS and WSS listeners always use
	// "127.0.0.1:0".
	TCPAddr       string
	WebSocketAddr string
}

// Listener IDs, as mochi records them in mqtt.Client.Net.Listener.
const (
	ListenerTCP       = "tcp"
	ListenerWebSocket = "ws"
	ListenerTLS       = "tls"
	ListenerWSS       = "wss"
)

// WebSocketPath is the request path of WebSocketURL and WSSURL. The
// WebSocket listeners accept any path.
const WebSocketPath = "/mqtt"

// Server is a running broker. Its methods are safe for concurrent use.
type Server struct {
	log   *slog.Logger
	mochi *mqtt.Server
	tcp   *Listener
	ws    *Listener
	tls   *Listener // nil without Options.TLS
	wss   *Listener // nil without Options.TLS

	closeOnce sync.Once
}

// Start opens the listeners and starts serving. The net.Listeners are
// open when it returns, so clients may connect at once. Call Close when
// done.
//
// The broker speaks MQTT 3.1, 3.1.1 and 5 as mochi does, with two changes.
// It never sends DISCONNECT to MQTT 3.x clients (a packet only clients send
// in 3.1.1), which mochi does on shutdown, session takeover and refused
// QoS 1 publishes; their connection just closes. And a client that
// connects with the client ID of an existing connection waits until that
// connection is torn down, which mochi alone races with (see
// takeoverHook): a client reconnecting at once could lose its new
// subscriptions.
func Start(opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.TCPAddr == "" {
		o.TCPAddr = "127.0.0.1:0"
	}
	if o.WebSocketAddr == "" {
		o.WebSocketAddr = "127.0.0.1:0"
	}

	// Open every net.Listener first: no port race, and nothing to undo
	// but closing them if one fails.
	var opened []net.Listener
	closeOpened := func() {
		for _, ln := range opened {
			ln.Close()
		}
	}
	listen := func(name, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeOpened()
			return nil, fmt.Errorf("broker: %s listener: %w", name, err)
		}
		opened = append(opened, ln)
		return ln, nil
	}
	s := &Server{log: log}
	ln, err := listen("tcp", o.TCPAddr)
	if err != nil {
		return nil, err
	}
	s.tcp = NewListener(ListenerTCP, ln, TCP, log)
	if ln, err = listen("websocket", o.WebSocketAddr); err != nil {
		return nil, err
	}
	s.ws = NewListener(ListenerWebSocket, ln, WebSocket, log)
	if o.TLS != nil {
		cfg := o.TLS.Clone()
		if ln, err = listen("tls", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		s.tls = NewListener(ListenerTLS, tls.NewListener(ln, cfg), TCP, log)
		if ln, err = listen("wss", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		s.wss = NewListener(ListenerWSS, tls.NewListener(ln, cfg), WebSocket, log)
	}

	mo := &mqtt.Options{
		InlineClient: o.InlineClient,
		Logger:       slog.New(minLevelHandler{h: log.Handler(), min: slog.LevelWarn}).With("component", "mochi"),
	}
	if o.Capabilities != nil {
		caps := *o.Capabilities // mochi fills in defaults in place
		mo.Capabilities = &caps
	}
	s.mochi = mqtt.New(mo)

	fail := func(err error) (*Server, error) {
		s.mochi.Close() // stops the hooks added so far; no listener is serving
		closeOpened()
		return nil, fmt.Errorf("broker: %w", err)
	}
	var auth, acl bool
	for _, h := range o.Hooks {
		auth = auth || h.Provides(mqtt.OnConnectAuthenticate)
		acl = acl || h.Provides(mqtt.OnACLCheck)
		if err := s.mochi.AddHook(h, nil); err != nil {
			return fail(err)
		}
	}
	if !auth || !acl {
		if err := s.mochi.AddHook(&allowHook{auth: !auth, acl: !acl}, nil); err != nil {
			return fail(err)
		}
	}
	if err := s.mochi.AddHook(new(noV3DisconnectHook), nil); err != nil {
		return fail(err)
	}
	if err := s.mochi.AddHook(&takeoverHook{s: s}, nil); err != nil {
		return fail(err)
	}
	for _, l := range s.listeners() {
		l.server = s.mochi
		if err := s.mochi.AddListener(l); err != nil {
			return fail(err)
		}
	}
	// Serve starts one goroutine per listener, which calls Listener.Serve;
	// from then on Close must be used to stop them. Serve fails only
	// before that (reading a store hook), so the listeners are not
	// waited for.
	if err := s.mochi.Serve(); err != nil {
		return fail(err)
	}
	return s, nil
}

// listeners returns the listeners in use.
func (s *Server) listeners() []*Listener {
	ls := []*Listener{s.tcp, s.ws}
	if s.tls != nil {
		ls = append(ls, s.tls, s.wss)
	}
	return ls
}

// TCPAddr returns the "host:port" of the MQTT-over-TCP listener, e.g.
// "127.0.0.1:41234".
func (s *Server) TCPAddr() string { return s.tcp.Address() }

// WebSocketURL returns the URL of the MQTT-over-WebSocket listener, e.g.
// "ws://127.0.0.1:41235/mqtt". The listener accepts any request path and
// selects the subprotocol "mqtt" (or "mqttv3.1") when the client offers it;
// MQTT travels in binary messages.
func (s *Server) WebSocketURL() string {
	return "ws://" + s.ws.Address() + WebSocketPath
}

// TLSAddr returns the "host:port" of the MQTT-over-TLS listener, or ""
// without Options.TLS.
func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Address()
}

// WSSURL returns the URL of the MQTT-over-WebSocket-over-TLS listener,
// e.g. "wss://127.0.0.1:41237/mqtt", or "" without Options.TLS.
func (s *Server) WSSURL() string {
	if s.wss == nil {
		return ""
	}
	return "wss://" + s.wss.Address() + WebSocketPath
}

// Mochi returns the underlying mochi broker, for example to publish with
// its inline client (Options.InlineClient). Do not close it: use Close.
func (s *Server) Mochi() *mqtt.Server { return s.mochi }

// Close stops the broker: it closes the listeners and every connection
// (MQTT 5 clients get DISCONNECT with reason code 0x8B, server shutting
// down; MQTT 3.x clients see the connection close) and waits for the
// goroutines that accept and serve connections. A few goroutines of mochi
// (its housekeeping loop and the per-client writers) have been told to
// stop by then and exit asynchronously right after. Close is idempotent
// and always returns nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mochi.Close() // closes the listeners (Listener.Close) and waits for mochi's clients
		for _, l := range s.listeners() {
			l.Wait()
		}
	})
	return nil
}

// allowHook accepts every CONNECT (if auth) and allows every topic (if acl).
type allowHook struct {
	mqtt.HookBase
	auth, acl bool
}

func (h *allowHook) ID() string { return "broker-allow-all" }

func (h *allowHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate && h.auth || b == mqtt.OnACLCheck && h.acl
}

func (h *allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// noV3DisconnectHook keeps mochi from sending DISCONNECT to MQTT 3.x
// clients (on shutdown, session takeover and refused QoS 1 publishes), a
// packet only clients may send in 3.1.1: it turns the packet into one
// mochi's Client.WritePacket refuses to encode, so nothing is written and
// the connection just closes.
type noV3DisconnectHook struct {
	mqtt.HookBase
}

func (h *noV3DisconnectHook) ID() string { return "broker-no-v3-disconnect" }

func (h *noV3DisconnectHook) Provides(b byte) bool { return b == mqtt.OnPacketEncode }

func (h *noV3DisconnectHook) OnPacketEncode(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.ProtocolVersion < 5 && pk.FixedHeader.Type == packets.Disconnect {
		pk.FixedHeader.Type = packets.Reserved
	}
	return pk
}

// takeoverWait bounds how long a new connection waits for mochi to tear
// down the previous connection of its client ID.
const takeoverWait = 5 * time.Second

// takeoverHook makes a session takeover wait until mochi has torn down the
// previous connection with the same client ID. mochi (v2.7.9) races there:
// the old connection's goroutine, once it sees its connection end, checks
// IsTakenOver and then, for a clean session, unsubscribes by client ID and
// deletes the client ID from its client list; if the new connection takes
// over in between, it loses its subscriptions or its place in the list,
// and messages for it are dropped. This happens when a client reconnects
// right after its connection dropped, as well as in live takeovers.
// OnSessionEstablish, called after authentication and just before mochi
// inherits the session, therefore disconnects a live previous connection
// itself (DISCONNECT 0x8E to MQTT 5 clients, as mochi does) and waits for
// its teardown to finish; mochi then finds either no session (clean) or the
// closed client to inherit from.
type takeoverHook struct {
	mqtt.HookBase
	s *Server
}

func (h *takeoverHook) ID() string { return "broker-takeover" }

func (h *takeoverHook) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

func (h *takeoverHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.s.mochi.Clients.Get(cl.ID)
	if !ok || old == cl || old.Net.Inline || old.Net.Conn == nil {
		return
	}
	var done <-chan struct{}
	for _, l := range h.s.listeners() {
		if l.ID() == old.Net.Listener {
			done = l.Done(old.Net.Conn)
		}
	}
	if done == nil {
		return // already torn down
	}
	if !old.Closed() {
		_ = h.s.mochi.DisconnectClient(old, packets.ErrSessionTakenOver)
	}
	t := time.NewTimer(takeoverWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		h.s.log.Warn("broker: previous connection not torn down in time", "client", cl.ID, "listener", old.Net.Listener)
	}
}

// minLevelHandler drops records below min.
type minLevelHandler struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

func (m minLevelHandler) Handle(ctx context.Context, r slog.Record) error {
	return m.h.Handle(ctx, r)
}

func (m minLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevelHandler{h: m.h.WithAttrs(attrs), min: m.min}
}

func (m minLevelHandler) WithGroup(name string) slog.Handler {
	return minLevelHandler{h: m.h.WithGroup(name), min: m.min}
}
