package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Kind is the transport a Listener speaks on top of its net.Listener.
type Kind int

const (
	// TCP carries MQTT directly on each accepted connection.
	TCP Kind = iota

	// WebSocket performs the server side of a WebSocket handshake on each
	// accepted connection, then carries MQTT in binary messages.
	WebSocket
)

// String returns "tcp" or "ws".
func (k Kind) String() string {
	switch k {
	case TCP:
		return "tcp"
	case WebSocket:
		return "ws"
	}
	return "unknown"
}

// handshakeTimeout bounds the TLS handshake and the WebSocket upgrade
// request of a new connection.
const handshakeTimeout = 10 * time.Second

// wsMaxMessage bounds one incoming WebSocket message, in bytes. Messages
// are read as a stream, so this guards against nonsense rather than saving
// memory; a client may well send several packets, or one large one, in a
// message.
const wsMaxMessage = 64 << 20

// Listener implements mochi's listeners.Listener on a net.Listener opened
// by the caller, so the port is known (and bound) before the broker starts;
// wrap the net.Listener with tls.NewListener for TLS (or WSS with kind
// WebSocket). mochi's own TCP and WebSocket listeners bind an address
// string inside Init/Serve, and its WebSocket listener reports bind errors
// only to its log. Unlike them, Listener tracks every accepted connection,
// closes them all in Close, and Wait waits for its goroutines.
//
// Register it with mqtt.Server.AddListener; the server calls Serve in a
// goroutine of its own when it starts and Close when it closes. Call Wait
// only once Serve has been called or is sure to be (after a successful
// mqtt.Server.Serve), and after Close.
type Listener struct {
	id   string
	ln   net.Listener
	kind Kind
	log  *slog.Logger

	// server, when set, is the mochi server l serves: Close then
	// disconnects its clients itself (see Close).
	server *mqtt.Server

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	// sessions maps the connections handed to mochi (after any TLS or
	// WebSocket handshake) to channels closed when mochi is done with them.
	sessions map[net.Conn]chan struct{}

	// wg counts the Serve loop (added by NewListener, because mochi starts
	// Serve in a goroutine of its own) and one goroutine per connection.
	wg sync.WaitGroup
}

// NewListener returns a Listener with the given ID (the listener name
// mochi records for its clients) serving MQTT of the given kind on ln. log
// receives accept errors at Warn level and connection failures and ends at
// Debug level; nil discards them.
func NewListener(id string, ln net.Listener, kind Kind, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Listener{
		id: id, ln: ln, kind: kind, log: log,
		conns:    map[net.Conn]struct{}{},
		sessions: map[net.Conn]chan struct{}{},
	}
	l.wg.Add(1)
	return l
}

// ID returns the listener's ID.
func (l *Listener) ID() string { return l.id }

// Address returns the address of the net.Listener.
func (l *Listener) Address() string { return l.ln.Addr().String() }

// Addr returns the address of the net.Listener.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Protocol returns the kind: "tcp" or "ws".
func (l *Listener) Protocol() string { return l.kind.String() }

// Init does nothing: the net.Listener is already open.
func (l *Listener) Init(*slog.Logger) error { return nil }

// Wait waits for Serve and the connection goroutines to return; call it
// after Close.
func (l *Listener) Wait() { l.wg.Wait() }

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// track registers a new connection and its goroutine, unless closed.
func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// Done returns a channel closed when mochi's handling of c ends, that is
// when the EstablishFn given c returns, having torn the client down; c is
// a connection mochi got from l (mqtt.Client.Net.Conn). It returns nil if
// l has no such connection (any more).
func (l *Listener) Done(c net.Conn) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch, ok := l.sessions[c]; ok {
		return ch
	}
	return nil
}

// Serve accepts connections until Close, handing each to establish in a
// goroutine of its own.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	defer l.wg.Done()
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("broker: accept failed", "listener", l.id, "error", err)
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		if !l.track(conn) {
			conn.Close()
			return
		}
		go l.handle(conn, establish)
	}
}

func (l *Listener) handle(conn net.Conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer l.untrack(conn)
	defer conn.Close()

	remote := conn.RemoteAddr().String()
	if tc, ok := conn.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.log.Debug("broker: tls handshake failed", "listener", l.id, "remote", remote, "error", err)
			return
		}
	}
	c := conn
	if l.kind == WebSocket {
		var err error
		if c, err = upgradeWebSocket(conn); err != nil {
			l.log.Debug("broker: websocket upgrade failed", "listener", l.id, "remote", remote, "error", err)
			return
		}
	}
	done := make(chan struct{})
	l.mu.Lock()
	l.sessions[c] = done
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.sessions, c)
		l.mu.Unlock()
		close(done)
	}()
	// establish returns when the MQTT connection ends.
	err := establish(l.id, c)
	l.log.Debug("broker: connection closed", "listener", l.id, "remote", remote, "error", err)
}

// Close stops accepting, disconnects the mochi clients of this listener
// (itself when it knows the server, see disconnectClients, or else with
// closeClients), then closes every remaining connection (for example one
// that has not sent CONNECT yet).
func (l *Listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()

	l.ln.Close()
	if l.server != nil {
		l.disconnectClients()
	} else {
		closeClients(l.id)
	}
	for _, c := range conns {
		c.Close()
	}
}

// disconnectClients does what mochi's CloseFn does (DISCONNECT with
// reason code 0x8B, server shutting down, to MQTT 5 clients, then the
// connection closed) without its Clients.GetByListener, which takes the
// client map's read lock twice (through Len) and so deadlocks when a
// disconnecting client's removal is waiting for the write lock in between
// (mochi v2.7.9). GetAll takes the lock once.
func (l *Listener) disconnectClients() {
	for _, cl := range l.server.Clients.GetAll() {
		if cl.Net.Listener == l.id && !cl.Closed() {
			_ = l.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// upgradeWebSocket performs the server side of the WebSocket handshake
// (RFC 6455) on conn, for any request path, selecting the subprotocol
// "mqtt" (MQTT 3.1.1 section 6) or the older "mqttv3.1" if offered.
func upgradeWebSocket(conn net.Conn) (net.Conn, error) {
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	u := ws.Upgrader{
		Protocol: func(p []byte) bool { return string(p) == "mqtt" || string(p) == "mqttv3.1" },
	}
	if _, err := u.Upgrade(conn); err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return newWSConn(conn), nil
}

// errNotBinary is returned by wsConn.Read for a text message.
var errNotBinary = errors.New("broker: websocket text message; MQTT needs binary messages")

// wsConn is the server side of an MQTT-over-WebSocket connection as a byte
// stream: Read returns the payloads of incoming binary messages back to
// back (message boundaries mean nothing, MQTT 3.1.1 section 6), and each
// Write sends one binary message. Pings are answered and a close frame is
// echoed by Read, through the same write lock as Write. The deadline
// methods and Close act on the underlying connection.
type wsConn struct {
	net.Conn

	rd      *wsutil.Reader          // used by Read only
	control wsutil.FrameHandlerFunc // answers control frames
	inMsg   bool                    // rd is inside a data message

	wmu sync.Mutex   // serialises writes of whole frames
	hdr headerBuffer // Write's frame header, under wmu
}

// headerBuffer collects one frame header.
type headerBuffer struct {
	b [ws.MaxHeaderSize]byte
	n int
}

func (h *headerBuffer) Write(p []byte) (int, error) {
	if len(p) > len(h.b)-h.n {
		return 0, io.ErrShortWrite // cannot happen: a header fits
	}
	h.n += copy(h.b[h.n:], p)
	return len(p), nil
}

func newWSConn(conn net.Conn) *wsConn {
	c := &wsConn{Conn: conn}
	c.control = wsutil.ControlFrameHandler(lockedWriter{c}, ws.StateServerSide)
	c.rd = &wsutil.Reader{
		Source:         conn,
		State:          ws.StateServerSide,
		MaxMessageSize: wsMaxMessage,
		OnIntermediate: c.control,
	}
	return c
}

func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if !c.inMsg {
			hdr, err := c.rd.NextFrame()
			if err != nil {
				return 0, err
			}
			if hdr.OpCode.IsControl() {
				if err := c.control(hdr, c.rd); err != nil {
					return 0, err // includes wsutil.ClosedError after a close frame
				}
				continue
			}
			if hdr.OpCode != ws.OpBinary {
				// Read the frame out first: closing a socket with unread
				// data makes the kernel reset it, losing the close frame.
				_ = c.rd.Discard()
				c.writeClose(ws.StatusUnsupportedData, "binary frames only")
				return 0, errNotBinary
			}
			c.inMsg = true
		}
		n, err := c.rd.Read(p)
		if err == io.EOF { // end of message
			c.inMsg = false
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Write sends p as one binary message, header and payload in one write
// (writev on TCP) so the frame does not go out as two segments.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hdr.n = 0
	if err := ws.WriteHeader(&c.hdr, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p))}); err != nil {
		return 0, err
	}
	hn := int64(c.hdr.n)
	bufs := net.Buffers{c.hdr.b[:c.hdr.n], p}
	n, err := bufs.WriteTo(c.Conn)
	return int(max(n-hn, 0)), err
}

func (c *wsConn) writeClose(code ws.StatusCode, reason string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = ws.WriteFrame(c.Conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}

// lockedWriter writes control frames under the connection's write lock.
type lockedWriter struct{ c *wsConn }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	return w.c.Conn.Write(p)
}
