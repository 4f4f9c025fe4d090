// Package netx provides the network transports an MQTT client speaks over: a
// one-method Dialer seam, and dialers for TCP, TLS, WebSocket and WSS (RFC
// 6455; MQTT 3.1.1 section 6), Unix domain sockets, with HTTP CONNECT
// proxies.
//
// Every Dialer returns a net.Conn carrying the MQTT byte stream. The stream
// is ordered and lossless; packet boundaries are not preserved by any
// transport [MQTT-6.0.0-2], so readers must treat it as a plain byte stream.
//
// # Transports
//
//   - URL turns a broker URL into a Dialer: tcp:// and mqtt:// (port 1883),
//     ssl://, tls:// and mqtts:// (8883), ws:// (80), wss:// (443) and
//     unix://. Options give the TLS settings (CA file, client certificate,
//     server name), the WebSocket settings and the proxy.
//   - TCP dials "host:port" with the standard library; the net.Conn is the
//     *net.TCPConn itself.
//   - TLS dials TLS 1.2 or later with crypto/tls, verifying the server's
//     certificate against the system roots or the given CA (SNI from the
//     host name, none for IP literals). Verification failures are typed:
//     ErrUnknownAuthority, ErrNameMismatch, ErrClientCertRefused.
//   - WebSocket dials a ws:// or wss:// URL, offers the subprotocol "mqtt"
//     [MQTT-6.0.0-3] and requires the server to select it [MQTT-6.0.0-4].
//     The returned net.Conn frames every Write as one masked binary frame and
//     turns incoming binary frames back into a byte stream; it answers pings
//     and the close handshake itself and rejects text frames [MQTT-6.0.0-1].
//     Client certificates work on wss exactly as on TLS.
//   - A proxy (Options.Proxy, or the environment with
//     Options.ProxyFromEnvironment) tunnels every TCP-based transport with
//     HTTP CONNECT and basic authentication; a refusal is ErrProxy with the
//     proxy's *HTTPStatusError.
//
// Steady-state reads and writes allocate nothing on any transport.
//
// # Errors
//
// Dial errors start with "netx: " and name the stage that failed (the TCP
// dial, the proxy, the TLS or WebSocket handshake); they wrap the cause, so errors.Is(err,
// context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.As
// with *net.OpError and the typed errors of this package (ErrSubprotocol,
// *HTTPStatusError, ...) work.
//
// # Concurrency
//
// Dialers are safe for concurrent use. The connections they return follow
// the net.Conn contract: one Read and one Write may run concurrently with
// each other and with Close and the deadline setters.
package netx

import (
	"context"
	"errors"
	"net"
)

// A Dialer opens the byte stream an MQTT client speaks over.
//
// Dial must honour ctx: when ctx is cancelled or its deadline passes before
// the connection is ready, Dial returns an error wrapping ctx.Err() and
// leaves no socket or goroutine behind. ctx only bounds connection set-up;
// cancelling it after Dial returned has no effect on the returned net.Conn,
// which is owned by the caller, who must Close it. Implementations are safe
// for concurrent use.
type Dialer interface {
	Dial(ctx context.Context) (net.Conn, error)
}

// DialerFunc adapts a function to the Dialer interface. It is as safe for
// concurrent use as the function it wraps.
type DialerFunc func(ctx context.Context) (net.Conn, error)

// Dial calls f(ctx); a nil f returns ErrNilDialer.
func (f DialerFunc) Dial(ctx context.Context) (net.Conn, error) {
	if f == nil {
		return nil, ErrNilDialer
	}
	return f(ctx)
}

// ErrNilDialer is returned by the Dial method of a nil DialerFunc.
var ErrNilDialer = errors.New("netx: nil DialerFunc")
