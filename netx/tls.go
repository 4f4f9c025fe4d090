package netx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
)

// TLS errors; the errors Dial and the connection's Read return for these
// cases wrap one of them together with the crypto/tls or crypto/x509 error.
var (
	// ErrUnknownAuthority reports a server certificate that no trusted CA
	// signed: add its CA to Options.CAFile or TLSConfig.RootCAs.
	ErrUnknownAuthority = errors.New("netx: tls: server certificate signed by an unknown authority")

	// ErrNameMismatch reports a server certificate that is not valid for
	// the name the client verifies: the URL's host, or Options.ServerName.
	ErrNameMismatch = errors.New("netx: tls: server certificate is not valid for the expected name")

	// ErrClientCertRefused reports that the server refused the handshake
	// over the client certificate: it requires one and none was sent, or
	// it does not trust the one sent. With TLS 1.3 the server says so after
	// the client's side of the handshake has completed, so this error may
	// come from the first Read rather than from Dial.
	ErrClientCertRefused = errors.New("netx: tls: server refused the client certificate (missing or not trusted)")
)

// TLS returns a Dialer for MQTT over TLS (RFC 8446, RFC 5246; MQTT 3.1.1
// section 5.1) to addr, a "host:port" address.
//
// cfg is cloned; nil means a zero tls.Config. Whatever it says, the
// connection uses TLS 1.2 or later; when cfg.ServerName is empty the host
// part of addr is both sent as SNI (not for IP literals, RFC 6066 section
// 3) and verified against the server's certificate. The server certificate
// is verified against cfg.RootCAs, or the system's roots when nil; only an
// explicit cfg.InsecureSkipVerify turns that off.
//
// Dial bounds the TCP connect and the TLS handshake by ctx. Errors wrap
// ErrUnknownAuthority, ErrNameMismatch or ErrClientCertRefused where they
// apply. The returned net.Conn is a *tls.Conn's wrapper that reports
// ErrClientCertRefused from Read as well (TLS 1.3 refuses client
// certificates after the handshake).
func TLS(addr string, cfg *tls.Config) Dialer {
	c, err := tlsConfig(cfg, addr)
	return &tlsDialer{addr: addr, cfg: c, err: err, dial: tcpDial}
}

// tlsConfig returns a copy of cfg with TLS 1.2 at least and ServerName set
// from addr when empty.
func tlsConfig(cfg *tls.Config, addr string) (*tls.Config, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		cfg.ServerName = host
	}
	return cfg, nil
}

type tlsDialer struct {
	addr string
	cfg  *tls.Config
	err  error
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (d *tlsDialer) Dial(ctx context.Context) (net.Conn, error) {
	prefix := "netx: dial tls " + d.addr
	if d.err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, d.err)
	}
	conn, err := d.dial(ctx, d.addr)
	if err != nil {
		return nil, err
	}
	cfg, watch := watchClientCert(d.cfg)
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, dialError(prefix+": handshake", ctx, watch.classify(err))
	}
	return &tlsConn{Conn: tc, watch: watch}, nil
}

// tlsConn is a *tls.Conn whose Read and Write errors name refused client
// certificates.
type tlsConn struct {
	*tls.Conn
	watch *certWatch
	read  atomic.Bool // some application data has been read
}

func (c *tlsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read.Store(true)
	}
	if err != nil && !c.read.Load() {
		err = c.watch.classify(err)
	}
	return n, err
}

func (c *tlsConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && !c.read.Load() {
		err = c.watch.classify(err)
	}
	return n, err
}

// certWatch records whether the server asked for a client certificate
// during the handshake.
type certWatch struct{ requested atomic.Bool }

// watchClientCert returns a copy of cfg that reports to the returned
// certWatch when the server requests a client certificate, and otherwise
// picks the certificate as crypto/tls would: cfg's GetClientCertificate,
// else the first of cfg.Certificates the request accepts, else none.
func watchClientCert(cfg *tls.Config) (*tls.Config, *certWatch) {
	w := new(certWatch)
	c := cfg.Clone()
	get := cfg.GetClientCertificate
	c.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		w.requested.Store(true)
		if get != nil {
			return get(info)
		}
		for i := range cfg.Certificates {
			if info.SupportsCertificate(&cfg.Certificates[i]) == nil {
				return &cfg.Certificates[i], nil
			}
		}
		return new(tls.Certificate), nil
	}
	return c, w
}

// classify is classifyTLS, plus one inference: with TLS 1.3 a server that
// refuses the client certificate does so after the client has finished its
// side of the handshake, and often closes the connection at once, so the
// client may only see the connection reset or closed. When the server had
// asked for a client certificate and the connection ends before any
// application data arrived, that refusal is named as the likely cause.
func (w *certWatch) classify(err error) error {
	err = classifyTLS(err)
	if w == nil || !w.requested.Load() || errors.Is(err, ErrClientCertRefused) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return &chainError{
			msg:  ErrClientCertRefused.Error() + " (the server asked for a client certificate, then closed the connection): " + err.Error(),
			errs: []error{ErrClientCertRefused, err},
		}
	}
	return err
}

// classifyTLS wraps a TLS error with the sentinel that names its cause, if
// one does.
func classifyTLS(err error) error {
	var unknown x509.UnknownAuthorityError
	var name x509.HostnameError
	var op *net.OpError
	switch {
	case errors.As(err, &unknown):
		return &chainError{msg: ErrUnknownAuthority.Error() + ": " + err.Error(), errs: []error{ErrUnknownAuthority, err}}
	case errors.As(err, &name):
		return &chainError{msg: ErrNameMismatch.Error() + ": " + err.Error(), errs: []error{ErrNameMismatch, err}}
	case errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && clientCertAlert(op.Err.Error()):
		return &chainError{msg: ErrClientCertRefused.Error() + ": " + err.Error(), errs: []error{ErrClientCertRefused, err}}
	}
	return err
}

// clientCertAlert reports whether a TLS alert received from the server is
// about the client's certificate: the server is the only one that judges it
// (RFC 8446 section 6.2; RFC 5246 section 7.2.2).
func clientCertAlert(alert string) bool {
	alert = strings.TrimPrefix(alert, "tls: ")
	switch alert {
	case "certificate required", "bad certificate", "unknown certificate authority",
		"unsupported certificate", "certificate revoked", "certificate expired", "certificate unknown":
		return true
	}
	return false
}
