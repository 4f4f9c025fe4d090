package netx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/devicemq/mqtt/internal/redact"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
)

// Default ports of the URL schemes (IANA: 1883 mqtt, 8883 secure-mqtt; RFC
// 6455: 80 ws, 443 wss).
const (
	PortMQTT      = "1883"
	PortMQTTS     = "8883"
	PortWebSocket = "80"
	PortWSS       = "443"
)

// ErrScheme reports a broker URL whose scheme URL does not know.
var ErrScheme = errors.New("netx: unknown broker URL scheme (want tcp, mqtt, ssl, tls, mqtts, ws, wss or unix)")

// Options configures the Dialer that URL builds. The zero value (or nil)
// means: system roots, TLS 1.2 or later, no client certificate, direct
// connections.
type Options struct {
	// TLSConfig is the base TLS configuration for ssl, tls, mqtts and wss
	// URLs; it is cloned, and the fields below are applied on the clone.
	// Verification of the server certificate is on unless this config
	// explicitly sets InsecureSkipVerify.
	TLSConfig *tls.Config

	// CAFile names a PEM file of CA certificates to trust instead of the
	// system's roots.
	CAFile string

	// CertFile and KeyFile name PEM files holding a client certificate and
	// its private key, for mutual TLS. They are used alike for TLS and for
	// WSS.
	CertFile, KeyFile string

	// ServerName is the name sent as SNI and verified in the server's
	// certificate, instead of the URL's host: for dialling an address that
	// differs from the certificate's name.
	ServerName string

	// WebSocket configures ws and wss URLs: headers, origin, frame and
	// buffer sizes, the lenient subprotocol check. Its TLSConfig and
	// NetDial are replaced by those built from these Options.
	WebSocket WebSocketOptions

	// Proxy is an HTTP proxy URL, "http://[user:password@]host[:port]", for
	// every TCP-based transport (all but unix): the connection is tunnelled
	// with HTTP CONNECT, with basic authentication when the URL carries a
	// user name.
	Proxy string

	// ProxyFromEnvironment takes the proxy from HTTPS_PROXY (TLS
	// transports), HTTP_PROXY (the others) and NO_PROXY when Proxy is
	// empty, as http.ProxyFromEnvironment does; loopback addresses are
	// never proxied.
	ProxyFromEnvironment bool

	// NetDial, if not nil, opens TCP connections (to the broker or to the
	// proxy) instead of a zero net.Dialer; it must honour ctx.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// URL returns the Dialer for a broker URL:
//
//	tcp://host[:1883], mqtt://host[:1883]        MQTT over TCP
//	ssl://host[:8883], tls://…, mqtts://…        MQTT over TLS
//	ws://host[:80]/path, wss://host[:443]/path   MQTT over WebSocket (path as given, "/" when empty)
//	unix:///path/to/socket                       MQTT over a Unix domain socket
//
// A missing port gets the scheme's default. A path and query are used by
// ws and wss only (sent in the handshake request); the other schemes ignore
// them. User information (user:pass@) and a fragment are refused: MQTT
// credentials go in client.Options, a proxy's in Options.Proxy. opts (nil means zero Options)
// is copied. Configuration errors are returned at once, before anything is
// dialled: an unknown scheme (ErrScheme), a URL without host, an unreadable
// or empty CA file, a client certificate and key that cannot be loaded or
// do not match, a bad proxy URL, a port outside 1 to 65535. The Dialer is
// nil when the error is not.
func URL(rawURL string, opts *Options) (Dialer, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("netx: broker URL %s: %w", redact.URL(rawURL), urlCause(err))
	}
	if u.User != nil {
		// MQTT credentials belong in the CONNECT (client.Options), proxy
		// ones in Options.Proxy; dropping them silently would hide that.
		return nil, fmt.Errorf("netx: broker URL %s: user information is not used; set the MQTT user name and password in client.Options, a proxy's in Options.Proxy", u.Redacted())
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("netx: broker URL %s: a fragment has no meaning here (RFC 6455 section 3)", u.Redacted())
	}
	if u.Scheme == "unix" {
		if u.Host != "" {
			return nil, fmt.Errorf("netx: broker URL %s: want unix:///absolute/path or unix:relative/path", u.Redacted())
		}
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		if path == "" {
			return nil, fmt.Errorf("netx: broker URL %s: no socket path", u.Redacted())
		}
		return DialerFunc(func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, dialError("netx: dial unix "+path, ctx, err)
			}
			return conn, nil
		}), nil
	}
	var port string
	secure := false
	switch u.Scheme {
	case "tcp", "mqtt":
		port = PortMQTT
	case "ssl", "tls", "mqtts":
		port, secure = PortMQTTS, true
	case "ws":
		port = PortWebSocket
	case "wss":
		port, secure = PortWSS, true
	default:
		return nil, fmt.Errorf("%w: %q in %s", ErrScheme, u.Scheme, u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("netx: broker URL %s: no host", u.Redacted())
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), port)
	} else if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("netx: broker URL %s: bad port %q", u.Redacted(), u.Port())
	}

	netDial := o.NetDial
	if netDial == nil {
		var d net.Dialer
		netDial = d.DialContext
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := netDial(ctx, "tcp", addr)
		if err != nil {
			return nil, dialError("netx: dial tcp "+addr, ctx, err)
		}
		return conn, nil
	}
	proxy, err := o.proxyFor(addr, secure)
	if err != nil {
		return nil, fmt.Errorf("netx: %w", err)
	}
	if proxy != nil {
		dial = viaProxy(proxy, netDial)
	}

	var cfg *tls.Config
	if secure {
		if cfg, err = o.tlsConfig(addr); err != nil {
			return nil, fmt.Errorf("netx: %w", err)
		}
	}
	switch u.Scheme {
	case "ws", "wss":
		ws := o.WebSocket
		ws.TLSConfig = cfg
		ws.NetDial = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
		wsURL := *u
		wsURL.Host = addr
		if wsURL.Path == "" {
			wsURL.Path = "/"
		}
		return WebSocket(wsURL.String(), &ws), nil
	case "ssl", "tls", "mqtts":
		return &tlsDialer{addr: addr, cfg: cfg, dial: dial}, nil
	default:
		return DialerFunc(func(ctx context.Context) (net.Conn, error) { return dial(ctx, addr) }), nil
	}
}

// tlsConfig builds the TLS configuration for a connection to addr.
func (o *Options) tlsConfig(addr string) (*tls.Config, error) {
	base := o.TLSConfig
	if o.ServerName != "" {
		base = base.Clone()
		if base == nil {
			base = &tls.Config{}
		}
		base.ServerName = o.ServerName
	}
	cfg, err := tlsConfig(base, addr)
	if err != nil {
		return nil, err
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

// String formats o with the password of Proxy redacted and WebSocket as
// WebSocketOptions.String shows it, under every fmt verb (%#v through
// GoString) and slog (LogValue): secrets never print. Pointers (TLSConfig,
// which may hold private keys) show as addresses.
func (o Options) String() string {
	return redact.Struct(o, func(field string, v reflect.Value) (string, bool) {
		if field == "Proxy" {
			return redact.URL(v.String()), true
		}
		return "", false
	})
}

// GoString is String, for %#v.
func (o Options) GoString() string { return o.String() }

// LogValue implements slog.LogValuer with String's text.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// urlCause is the cause of a url.Parse error, without the URL it quotes
// (which may hold a password).
func urlCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
