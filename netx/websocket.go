package netx

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/devicemq/mqtt/internal/redact"
	"github.com/gobwas/ws"
	"log/slog"
	"reflect"
	"slices"
)

// Subprotocol is the WebSocket subprotocol name MQTT uses. WebSocket offers
// it in Sec-WebSocket-Protocol [MQTT-6.0.0-3] and requires the server to
// select it [MQTT-6.0.0-4].
const Subprotocol = "mqtt"

// Defaults used by WebSocket when the matching WebSocketOptions field is
// zero. All sizes are in bytes.
const (
	// DefaultMaxFrameSize bounds the declared payload length of one incoming
	// WebSocket frame: 268,435,460 bytes, the largest MQTT control packet
	// (MQTT 3.1.1 section 2.2.3), since a sender may put a whole packet in
	// one frame. Payloads are streamed, never buffered whole, so the bound
	// is a policy against misbehaving peers, not a memory need: the MQTT
	// decoder's packet size limit (client.Options.MaxPacketSize) is what
	// bounds memory, and no lower frame bound gets in its way by default.
	DefaultMaxFrameSize = 1 + 4 + 268_435_455

	// DefaultReadBufferSize is the size of the connection's read buffer.
	DefaultReadBufferSize = 4096

	// DefaultWriteBufferSize is the size of the connection's write buffer,
	// where payloads are masked (RFC 6455 section 5.3) without touching the
	// caller's bytes; a frame whose header and payload fit in it goes out in
	// one write to the socket. 32 KiB takes a 16 KiB PUBLISH (IoT Hub's
	// largest) and batches of small ones in one system call.
	DefaultWriteBufferSize = 32 << 10
)

// minBufferSize is the smallest read or write buffer WebSocket uses: a read
// buffer must hold a whole control frame (a 14-byte header and 125 bytes of
// payload) and a write buffer a whole frame header.
const minBufferSize = 256

const subprotocolText = `server did not select subprotocol "mqtt" [MQTT-6.0.0-4]`

// Errors returned by WebSocket dialers and connections. Test for them with
// errors.Is; the returned errors wrap them with context.
var (
	// ErrSubprotocol reports that the server did not select the subprotocol
	// "mqtt" in its upgrade answer [MQTT-6.0.0-4]: it named another one or,
	// unless WebSocketOptions.AllowMissingSubprotocol is set, none. Dial
	// closes the socket before returning the error.
	ErrSubprotocol = errors.New("netx: websocket: " + subprotocolText)

	// ErrProtocol reports a violation of RFC 6455 framing by the server: a
	// masked frame (section 5.1), reserved bits set with no extension
	// negotiated or a reserved opcode (section 5.2), a control frame longer
	// than 125 bytes or fragmented (section 5.5), a continuation frame
	// outside of a fragmented message or a new data message inside one
	// (section 5.4), or a malformed close frame (section 5.5.1). Read
	// returns it wrapped with the details, sends a close frame with status
	// 1002 and closes the socket.
	ErrProtocol = errors.New("netx: websocket protocol error")

	// ErrTextFrame reports a text data frame from the server; MQTT Control
	// Packets must be sent in binary data frames [MQTT-6.0.0-1]. Read
	// returns it, sends a close frame with status 1003 and closes the
	// socket. errors.Is(ErrTextFrame, ErrProtocol) is true.
	ErrTextFrame = fmt.Errorf("%w: text frame received, MQTT needs binary frames [MQTT-6.0.0-1]", ErrProtocol)

	// ErrFrameTooLarge reports an incoming frame whose declared payload
	// length exceeds WebSocketOptions.MaxFrameSize. Read returns it wrapped
	// with the length, sends a close frame with status 1009 and closes the
	// socket. errors.Is(ErrFrameTooLarge, ErrProtocol) is true.
	ErrFrameTooLarge = fmt.Errorf("%w: frame too large", ErrProtocol)
)

// HTTPStatusError reports that the server answered the WebSocket upgrade
// request with an HTTP status other than 101 Switching Protocols (RFC 6455
// section 4.1). Dial returns it wrapped; find it with errors.As.
type HTTPStatusError struct {
	// StatusCode is the HTTP status code, e.g. 400.
	StatusCode int
	// Status is the reason phrase of the status line, e.g. "Bad Request";
	// it may be empty.
	Status string
}

// Error returns a message such as
// "upgrade refused: HTTP status 400 Bad Request"; Dial adds the URL and stage.
func (e *HTTPStatusError) Error() string {
	msg := "upgrade refused: HTTP status " + strconv.Itoa(e.StatusCode)
	if e.Status != "" {
		msg += " " + e.Status
	}
	return msg
}

// CloseError is what Read returns once the server has sent a close frame
// (RFC 6455 section 5.5.1). By then the connection has answered with a close
// frame echoing Code, and Write fails. errors.Is(err, io.EOF) is true for a
// CloseError, so it reads as the end of the stream; Close must still be
// called to release the socket.
type CloseError struct {
	// Code is the status code the server sent (RFC 6455 section 7.4), or
	// 1005 (no status received) when its close frame had no payload.
	Code uint16
	// Reason is the UTF-8 reason text the server sent, possibly empty.
	Reason string
}

// Error returns a message such as
// "netx: websocket closed by peer: status 1000: bye".
func (e *CloseError) Error() string {
	msg := "netx: websocket closed by peer: status " + strconv.Itoa(int(e.Code))
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns io.EOF: a closed WebSocket is the end of the MQTT stream.
func (e *CloseError) Unwrap() error { return io.EOF }

// WebSocketOptions configures WebSocket. The zero value, and a nil pointer,
// select the defaults. WebSocket copies the options, so changing them (or
// the Header or TLSConfig they point to) afterwards has no effect.
type WebSocketOptions struct {
	// Header holds extra headers for the HTTP upgrade request, such as
	// Authorization or Cookie. It must not set the headers the handshake
	// owns (Upgrade, Connection and the Sec-WebSocket-* headers); Dial
	// fails if it does. A Host entry replaces the Host header, which
	// defaults to the URL's host.
	Header http.Header

	// Origin, if not empty, is sent as the Origin header (RFC 6455 section
	// 4.1, item 8), replacing any Origin in Header.
	Origin string

	// NetDial, if not nil, opens the underlying connection instead of a
	// zero net.Dialer's DialContext. It is called with network "tcp" and the
	// URL's "host:port" (port 80 for ws and 443 for wss when the URL has
	// none) and must honour ctx.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)

	// TLSConfig configures TLS for wss URLs; nil means the zero tls.Config.
	// When its ServerName is empty, the URL's host name is used. It is
	// ignored for ws URLs.
	TLSConfig *tls.Config

	// MaxFrameSize bounds, in bytes, the payload length an incoming frame
	// may declare; a larger frame makes Read fail with ErrFrameTooLarge.
	// Zero means DefaultMaxFrameSize and a negative value means no bound.
	// Payloads are streamed into the caller's buffers, so no memory is ever
	// allocated according to a length the peer declares.
	MaxFrameSize int64

	// ReadBufferSize and WriteBufferSize are the sizes, in bytes, of the
	// connection's read and write buffers. Zero means DefaultReadBufferSize
	// and DefaultWriteBufferSize; values below 256 are raised to 256.
	ReadBufferSize, WriteBufferSize int

	// AllowMissingSubprotocol, if true, accepts an upgrade answer that
	// selects no subprotocol at all, as some older brokers send. It is a
	// lenient opt-in outside of [MQTT-6.0.0-4]; an answer that selects a
	// subprotocol other than "mqtt" is rejected regardless.
	AllowMissingSubprotocol bool
}

// WebSocket returns a Dialer for MQTT over WebSocket (MQTT 3.1.1 section 6)
// to rawURL, a ws:// or wss:// URL such as "ws://broker.example:8080/mqtt".
// The URL's path and query are sent as given. User information in the URL is
// not sent; put credentials in opts.Header instead. opts may be nil; see
// WebSocketOptions for the defaults.
//
// Dial connects, (for wss) runs TLS, and sends the HTTP upgrade request
// offering the subprotocol "mqtt" [MQTT-6.0.0-3]. ctx bounds every step: when
// it ends, Dial fails with an error wrapping ctx.Err() and leaves no socket
// or goroutine behind. Dial fails with an error wrapping
//
//   - *HTTPStatusError if the server answers with a status other than 101,
//   - ErrSubprotocol if the server does not select "mqtt" [MQTT-6.0.0-4],
//   - the cause, for a bad URL or options, a failed connect or a malformed
//     answer.
//
// Any bytes the server sent right after its upgrade answer are kept and
// returned by the connection's first Reads.
//
// The returned net.Conn carries the MQTT stream [MQTT-6.0.0-2]:
//
//   - Write(p) sends p as exactly one binary frame (RFC 6455 section 5.6),
//     masked with a fresh random key (sections 5.1 and 5.3), and returns
//     len(p) or an error; a Write of no bytes sends nothing. p is not
//     modified. Any Write error, including a deadline, leaves the stream
//     unusable and is returned by every later Write.
//   - Read returns the payload bytes of binary frames, including those of
//     fragmented messages, as one continuous stream, whatever the frame
//     boundaries; it may return fewer bytes than the current frame holds.
//     It answers pings with pongs carrying the same payload (section
//     5.5.2), ignores pongs, and skips empty frames. A read deadline leaves
//     the stream intact, so Read may be called again after a timeout.
//     Read fails with ErrTextFrame, ErrProtocol or ErrFrameTooLarge, closing
//     the socket, when the server breaks the rules; with *CloseError, which
//     wraps io.EOF, after the server's close frame (which Read answers,
//     echoing its status code); with io.EOF when the socket ends between
//     messages without a close frame, or io.ErrUnexpectedEOF inside a
//     frame or a fragmented message.
//   - Close sends a close frame with status 1000 (section 5.5.1) unless one
//     was sent already, waiting at most one second, then closes the socket.
//     It may be called more than once and returns the first call's result.
//     Close sets the socket's write deadline to bound the close frame.
//   - LocalAddr, RemoteAddr and the deadline setters act on the socket.
//
// Steady-state Read and Write allocate no memory. The net.Conn is safe for
// one Read and one Write at a time, concurrently with each other and with
// Close; the control frames Read sends and Close's close frame never
// interleave with a frame being written.
func WebSocket(rawURL string, opts *WebSocketOptions) Dialer {
	d := &wsDialer{url: rawURL, display: rawURL}
	if opts != nil {
		d.opts = *opts
	}
	d.opts.Header = nil
	if d.opts.TLSConfig != nil {
		d.opts.TLSConfig = d.opts.TLSConfig.Clone()
	}
	if d.opts.MaxFrameSize == 0 {
		d.opts.MaxFrameSize = DefaultMaxFrameSize
	}
	if d.opts.ReadBufferSize == 0 {
		d.opts.ReadBufferSize = DefaultReadBufferSize
	}
	if d.opts.WriteBufferSize == 0 {
		d.opts.WriteBufferSize = DefaultWriteBufferSize
	}
	d.opts.ReadBufferSize = max(d.opts.ReadBufferSize, minBufferSize)
	d.opts.WriteBufferSize = max(d.opts.WriteBufferSize, minBufferSize)

	u, err := url.Parse(rawURL)
	if err != nil {
		d.err = fmt.Errorf("netx: websocket URL %s: %w", redact.URL(rawURL), urlCause(err))
		return d
	}
	d.display = u.Redacted()
	if u.Fragment != "" || strings.HasSuffix(rawURL, "#") {
		d.err = errors.New("URL has a fragment, which WebSocket URIs must not use (RFC 6455 section 3)")
		return d
	}
	if u.User != nil {
		d.err = errors.New("URL has user information, which is not used; set MQTT credentials in the CONNECT (client.Options)")
		return d
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		d.err = fmt.Errorf("unsupported URL scheme %q, want ws or wss", u.Scheme)
		return d
	}
	if u.Host == "" {
		d.err = errors.New("URL has no host")
		return d
	}
	if opts != nil {
		d.header, d.host, d.err = requestHeader(opts.Header, opts.Origin)
	}
	return d
}

// reservedHeaders are the request headers the WebSocket handshake writes
// itself (RFC 6455 section 4.1), in canonical form.
var reservedHeaders = map[string]bool{
	"Upgrade":                  true,
	"Connection":               true,
	"Sec-Websocket-Key":        true,
	"Sec-Websocket-Version":    true,
	"Sec-Websocket-Protocol":   true,
	"Sec-Websocket-Extensions": true,
}

// requestHeader copies the caller's extra headers into canonical form, adds
// Origin and takes out Host.
func requestHeader(h http.Header, origin string) (header http.Header, host string, err error) {
	header = make(http.Header, len(h)+1)
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		if reservedHeaders[ck] {
			return nil, "", fmt.Errorf("header %q is set by the WebSocket handshake", ck)
		}
		if ck == "Host" {
			if len(vs) > 0 {
				host = vs[0]
			}
			continue
		}
		header[ck] = append(header[ck], vs...)
	}
	if origin != "" {
		header.Set("Origin", origin)
	}
	if len(header) == 0 {
		header = nil
	}
	return header, host, nil
}

type wsDialer struct {
	url     string
	display string // url with any password redacted, for messages
	opts    WebSocketOptions
	header  http.Header // never modified after construction
	host    string
	err     error // a bad URL or bad options, reported by every Dial
}

func (d *wsDialer) Dial(ctx context.Context) (net.Conn, error) {
	prefix := "netx: websocket " + d.display
	if d.err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, d.err)
	}
	err := ctx.Err()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}

	netDial := d.opts.NetDial
	if netDial == nil {
		var nd net.Dialer
		netDial = nd.DialContext
	}
	var (
		dialed       string // "tcp host:port" once NetDial was called
		connected    bool
		statusReason string
	)
	var tlsCfg *tls.Config
	var watch *certWatch
	if d.opts.TLSConfig != nil {
		tlsCfg, watch = watchClientCert(d.opts.TLSConfig)
	}
	dialer := ws.Dialer{
		Protocols: []string{Subprotocol},
		Host:      d.host,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = network + " " + addr
			conn, err := netDial(ctx, network, addr)
			if err != nil {
				if conn != nil {
					conn.Close()
				}
				return nil, err
			}
			connected = true
			return conn, nil
		},
		TLSConfig: tlsCfg,
		OnStatusError: func(_ int, reason []byte, _ io.Reader) {
			statusReason = string(reason)
		},
	}
	if d.header != nil {
		dialer.Header = ws.HandshakeHeaderHTTP(d.header)
	}

	// ws.Dialer.Dial bounds both the connect and the upgrade by ctx: it
	// watches ctx from a goroutine that it stops before returning, and it
	// closes the socket on failure.
	conn, br, hs, err := dialer.Dial(ctx, d.url)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		stage := prefix + ": handshake"
		switch {
		case dialed == "":
			stage = prefix
		case !connected:
			stage = prefix + ": dial " + dialed
		}
		err = watch.classify(err)
		var status ws.StatusError
		switch {
		case errors.As(err, &status):
			err = &HTTPStatusError{StatusCode: int(status), Status: statusReason}
		case errors.Is(err, ws.ErrHandshakeBadSubProtocol):
			return nil, &chainError{
				msg:  stage + ": " + subprotocolText + ": " + err.Error(),
				errs: []error{ErrSubprotocol, err},
			}
		}
		return nil, dialError(stage, ctx, err)
	}
	if hs.Protocol != Subprotocol && (hs.Protocol != "" || !d.opts.AllowMissingSubprotocol) {
		if br != nil {
			ws.PutReader(br)
		}
		conn.Close()
		return nil, &chainError{
			msg:  prefix + ": handshake: " + subprotocolText + ": the answer selected none",
			errs: []error{ErrSubprotocol},
		}
	}
	return newWSConn(conn, br, &d.opts), nil
}

// prefixReader reads the bytes the handshake reader holds before reading
// from the socket, and returns the handshake reader to gobwas' pool once it
// is drained.
type prefixReader struct {
	br   *bufio.Reader
	conn net.Conn
}

func (r *prefixReader) Read(p []byte) (int, error) {
	if r.br != nil {
		if r.br.Buffered() > 0 {
			// Only copies buffered bytes; never reads from the socket.
			return r.br.Read(p)
		}
		ws.PutReader(r.br)
		r.br = nil
	}
	return r.conn.Read(p)
}

// String formats o with the values of Header redacted (they may carry
// tokens): only the header names show. %#v (GoString) and slog (LogValue)
// show the same.
func (o WebSocketOptions) String() string {
	return redact.Struct(o, func(field string, v reflect.Value) (string, bool) {
		if field != "Header" {
			return "", false
		}
		if v.Len() == 0 {
			return "map[]", true
		}
		names := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			names = append(names, k.String()+":"+redact.Mark)
		}
		slices.Sort(names)
		return "map[" + strings.Join(names, " ") + "]", true
	})
}

// GoString is String, for %#v.
func (o WebSocketOptions) GoString() string { return o.String() }

// LogValue implements slog.LogValuer with String's text.
func (o WebSocketOptions) LogValue() slog.Value { return slog.StringValue(o.String()) }
