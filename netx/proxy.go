package netx

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/devicemq/mqtt/internal/redact"
)

// ErrProxy reports that an HTTP proxy refused to open a tunnel (RFC 9110
// section 9.3.6): errors wrap it together with an *HTTPStatusError holding
// the proxy's status.
var ErrProxy = errors.New("netx: proxy refused the CONNECT request")

// aLongTimeAgo is a deadline in the past, set to unblock I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// dialFunc opens a TCP connection to addr.
type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

// tcpDial is the default dialFunc.
func tcpDial(ctx context.Context, addr string) (net.Conn, error) {
	return TCP(addr).Dial(ctx)
}

// viaProxy returns a dialFunc that opens a tunnel to addr through the HTTP
// proxy at proxy with a CONNECT request, using basic authentication when
// proxy carries a user name. dial opens the connection to the proxy.
func viaProxy(proxy *url.URL, dial func(ctx context.Context, network, addr string) (net.Conn, error)) dialFunc {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		prefix := "netx: proxy " + proxy.Redacted() + ": CONNECT " + addr
		proxyAddr := proxy.Host
		if proxy.Port() == "" {
			proxyAddr = net.JoinHostPort(proxy.Hostname(), "80")
		}
		conn, err := dial(ctx, "tcp", proxyAddr)
		if err != nil {
			return nil, dialError(prefix+": dial "+proxyAddr, ctx, err)
		}
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
		fail := func(err error) (net.Conn, error) {
			stop()
			conn.Close()
			return nil, dialError(prefix, ctx, err)
		}
		req := &http.Request{
			Method: http.MethodConnect,
			URL:    &url.URL{Opaque: addr},
			Host:   addr,
			Header: make(http.Header),
		}
		if u := proxy.User; u != nil {
			pass, _ := u.Password()
			req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
		}
		if err := req.Write(conn); err != nil {
			return fail(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return fail(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fail(&chainError{
				msg:  ErrProxy.Error() + ": " + resp.Status,
				errs: []error{ErrProxy, &HTTPStatusError{StatusCode: resp.StatusCode, Status: resp.Status}},
			})
		}
		if !stop() {
			return fail(ctx.Err())
		}
		if err := conn.SetDeadline(time.Time{}); err != nil {
			return fail(err)
		}
		if br.Buffered() > 0 {
			// The proxy sent tunnelled bytes along with its answer.
			return &bufferedConn{Conn: conn, r: br}, nil
		}
		return conn, nil
	}
}

// bufferedConn reads what r holds before reading from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// proxyFor returns the proxy for a connection to addr under o's proxy
// settings: Options.Proxy, or with Options.ProxyFromEnvironment the
// standard environment variables (HTTPS_PROXY for TLS transports,
// HTTP_PROXY for the others, NO_PROXY; see http.ProxyFromEnvironment, which
// never proxies loopback addresses). It returns nil for a direct
// connection.
func (o *Options) proxyFor(addr string, secure bool) (*url.URL, error) {
	if o.Proxy != "" {
		u, err := url.Parse(o.Proxy)
		if err != nil {
			return nil, fmt.Errorf("proxy URL %s: %w", redact.URL(o.Proxy), urlCause(err))
		}
		if u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("proxy URL %s: want http://[user:password@]host[:port]", u.Redacted())
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("proxy URL %s: bad port %q", u.Redacted(), p)
			}
		}
		return u, nil
	}
	if !o.ProxyFromEnvironment {
		return nil, nil
	}
	scheme := "http"
	if secure {
		scheme = "https"
	}
	return http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: scheme, Host: addr}})
}
