package hubsim

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener implements mochi's listeners.Listener on a net.Listener the hub
// opened itself, so the port is known (and bound) before the broker starts.
// mochi's own TCP and WebSocket listeners bind an address string inside
// Init/Serve, and its WebSocket listener reports bind errors only to its
// log. Unlike them, listener tracks every accepted connection, closes them
// all in Close, and lets the hub wait for its goroutines.
type listener struct {
	id      string
	ln      net.Listener
	upgrade func(net.Conn) (net.Conn, error) // nil for plain TCP
	log     *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}

	// wg counts the Serve loop (added by newListener, because mochi starts
	// Serve in a goroutine of its own) and one goroutine per connection.
	wg sync.WaitGroup
}

func newListener(id string, ln net.Listener, upgrade func(net.Conn) (net.Conn, error), log *slog.Logger) *listener {
	l := &listener{id: id, ln: ln, upgrade: upgrade, log: log, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	return l
}

func (l *listener) ID() string              { return l.id }
func (l *listener) Address() string         { return l.ln.Addr().String() }
func (l *listener) Init(*slog.Logger) error { return nil } // already listening
func (l *listener) Protocol() string        { return l.id }

// wait waits for Serve and the connection goroutines to return; call it
// after Close.
func (l *listener) wait() { l.wg.Wait() }

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// track registers a new connection and its goroutine, unless closed.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// Serve accepts connections until Close.
func (l *listener) Serve(establish listeners.EstablishFn) {
	defer l.wg.Done()
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("hubsim: accept failed", "listener", l.id, "error", err)
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

func (l *listener) handle(conn net.Conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer l.untrack(conn)
	defer conn.Close()

	c := conn
	if l.upgrade != nil {
		var err error
		if c, err = l.upgrade(conn); err != nil {
			l.log.Debug("hubsim: websocket upgrade failed", "remote", conn.RemoteAddr().String(), "error", err)
			return
		}
	}
	// establish returns when the MQTT connection ends.
	err := establish(l.id, c)
	l.log.Debug("hubsim: connection closed", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
}

// Close stops accepting, lets mochi close its clients, then closes every
// remaining connection (for example one that has not sent CONNECT yet).
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()

	l.ln.Close()
	closeClients(l.id)
	for _, c := range conns {
		c.Close()
	}
}

// wsHandshakeTimeout bounds the HTTP upgrade request.
const wsHandshakeTimeout = 10 * time.Second

// wsMaxMessage bounds one WebSocket message, in bytes: IoT Hub's largest
// PUBLISH is 16 KB, MQTT's largest packet 256 MB.
const wsMaxMessage = 1 << 20

// upgradeWebSocket performs the server side of the WebSocket handshake
// (RFC 6455) on conn, for any request path, selecting the subprotocol
// "mqtt" (MQTT 3.1.1 section 6) or the older "mqttv3.1" if offered.
func upgradeWebSocket(conn net.Conn) (net.Conn, error) {
	if err := conn.SetDeadline(time.Now().Add(wsHandshakeTimeout)); err != nil {
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
var errNotBinary = errors.New("hubsim: websocket text message; MQTT needs binary messages")

// wsConn is the server side of an MQTT-over-WebSocket connection as a byte
// stream: Read returns the payloads of incoming binary messages back to
// back (message boundaries mean nothing, MQTT 3.1.1 section 6), and each
// Write sends one binary message. Pings are answered and a close frame is
// echoed by Read, through the same write lock as Write. The deadline
// methods and Close act on the TCP connection.
type wsConn struct {
	net.Conn

	rd      *wsutil.Reader          // used by Read only
	control wsutil.FrameHandlerFunc // answers control frames
	inMsg   bool                    // rd is inside a data message

	wmu sync.Mutex // serialises writes of whole frames
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

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ws.WriteHeader(c.Conn, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p))}); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
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
