package netx_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/internal/testcerts"
	"github.com/devicemq/mqtt/netx"
	"github.com/gobwas/ws"
)

// broker starts mosquitto with every listener: TCP, TLS, mutual TLS, WS,
// WSS, WSS with client certificates, and a Unix socket.
func broker(t *testing.T) (*mosquitto.Broker, *testcerts.PKI) {
	pki := testcerts.New(t)
	b := mosquitto.Start(t, mosquitto.Config{
		WebSocket: true,
		Unix:      true,
		TLS:       &mosquitto.TLSFiles{CA: pki.CAFile, Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.CAFile},
	})
	return b, pki
}

func port(t *testing.T, addrOrURL string) string {
	t.Helper()
	s := addrOrURL
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	s, _, _ = strings.Cut(s, "/")
	_, p, err := net.SplitHostPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// toLoopback dials every address on 127.0.0.1, keeping the port: it lets
// a test use the certificate's names without a resolver.
func toLoopback(ctx context.Context, network, addr string) (net.Conn, error) {
	_, p, _ := net.SplitHostPort(addr)
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", p))
}

// roundTrip connects an MQTT client through d, publishes at QoS 1 to a
// topic it subscribed to, receives the message and disconnects.
func roundTrip(t *testing.T, d netx.Dialer, id string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d, &client.Options{ClientID: id})
	if err != nil {
		return err
	}
	defer c.Close()
	got := make(chan client.Message, 1)
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "rt/" + id, QoS: 1, Handler: func(m client.Message) { got <- m }}); err != nil {
		return err
	}
	if err := c.Publish(ctx, client.Message{Topic: "rt/" + id, Payload: []byte(id), QoS: 1}); err != nil {
		return err
	}
	select {
	case m := <-got:
		if string(m.Payload) != id {
			t.Errorf("%s: received %q", id, m.Payload)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.Disconnect(ctx)
}

func mustURL(t *testing.T, u string, o *netx.Options) netx.Dialer {
	t.Helper()
	d, err := netx.URL(u, o)
	if err != nil {
		t.Fatalf("URL(%s): %v", u, err)
	}
	return d
}

// TestURLTransports: the client runs over every transport through the URL
// entry point, against mosquitto; TLS names are verified by host name and
// by IP address.
func TestURLTransports(t *testing.T) {
	b, pki := broker(t)
	ca := &netx.Options{CAFile: pki.CAFile}
	mtls := &netx.Options{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
	named := &netx.Options{CAFile: pki.CAFile, NetDial: toLoopback}
	namedMTLS := &netx.Options{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, NetDial: toLoopback}
	for _, tc := range []struct {
		name, url string
		opts      *netx.Options
	}{
		{"tcp", "tcp://" + b.TCPAddr, nil},
		{"mqtt", "mqtt://" + b.TCPAddr, nil},
		{"tls by IP", "tls://" + b.TLSAddr, ca},
		{"ssl by name", "ssl://localhost:" + port(t, b.TLSAddr), ca},
		{"mqtts by another name", "mqtts://broker.example.test:" + port(t, b.TLSAddr), named},
		{"mutual TLS", "mqtts://broker.example.test:" + port(t, b.MTLSAddr), namedMTLS},
		{"ws", b.WSURL, nil},
		{"wss by IP", b.WSSURL, ca},
		{"wss by name", "wss://localhost:" + port(t, b.WSSURL) + "/mqtt", ca},
		{"wss with client certificate", "wss://broker.example.test:" + port(t, b.MWSSURL) + "/mqtt", namedMTLS},
		{"unix", "unix://" + b.UnixPath, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := roundTrip(t, mustURL(t, tc.url, tc.opts), strings.ReplaceAll(tc.name, " ", "-")); err != nil {
				t.Fatal(err)
			}
		})
	}
	_ = mtls
}

// TestTLSVerificationErrors: an untrusted server, a name mismatch and a
// refused client certificate each give their own error, for TLS and WSS
// alike (field cases BR-25 and BR-27).
func TestTLSVerificationErrors(t *testing.T) {
	b, pki := broker(t)
	for _, tc := range []struct {
		name, url string
		opts      *netx.Options
		want      error
	}{
		{"tls: system roots do not know the test CA", "tls://" + b.TLSAddr, nil, netx.ErrUnknownAuthority},
		{"wss: system roots do not know the test CA", b.WSSURL, nil, netx.ErrUnknownAuthority},
		{"tls: trusted CA of another PKI", "tls://" + b.TLSAddr, &netx.Options{CAFile: pki.OtherCAFile}, netx.ErrUnknownAuthority},
		{"tls: name not in the certificate", "tls://" + b.TLSAddr, &netx.Options{CAFile: pki.CAFile, ServerName: "wrong.example.test"}, netx.ErrNameMismatch},
		{"wss: name not in the certificate", b.WSSURL, &netx.Options{CAFile: pki.CAFile, ServerName: "wrong.example.test"}, netx.ErrNameMismatch},
		{"mutual TLS: no client certificate", "tls://" + b.MTLSAddr, &netx.Options{CAFile: pki.CAFile}, netx.ErrClientCertRefused},
		{"mutual TLS: certificate of another CA", "tls://" + b.MTLSAddr, &netx.Options{CAFile: pki.CAFile, CertFile: pki.OtherCert, KeyFile: pki.OtherKey}, netx.ErrClientCertRefused},
		{"wss with client certificates: none sent", b.MWSSURL, &netx.Options{CAFile: pki.CAFile}, netx.ErrClientCertRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := roundTrip(t, mustURL(t, tc.url, tc.opts), "v")
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// An IP address with an explicit name to verify instead.
	if err := roundTrip(t, mustURL(t, "tls://"+b.TLSAddr, &netx.Options{CAFile: pki.CAFile, ServerName: "broker.example.test"}), "override"); err != nil {
		t.Fatalf("IP address with ServerName override: %v", err)
	}
}

// TestURLConfigErrors: configuration errors come from URL, before any dial
// (BR-27 item 4).
func TestURLConfigErrors(t *testing.T) {
	pki := testcerts.New(t)
	for _, tc := range []struct {
		url  string
		opts *netx.Options
		want string
	}{
		{"http://broker:80", nil, "scheme"},
		{"mqtt+ws://broker", nil, "scheme"},
		{"tcp://", nil, "no host"},
		{"unix://", nil, "no socket path"},
		{"tls://broker", &netx.Options{CAFile: "/nonexistent/ca.crt"}, "CA file"},
		{"tls://broker", &netx.Options{CAFile: pki.ClientKey}, "no PEM certificate"},
		{"tls://broker", &netx.Options{CertFile: pki.ClientCert, KeyFile: pki.OtherKey}, "client certificate"},
		{"wss://broker/mqtt", &netx.Options{CertFile: pki.ClientCert}, "client certificate"},
		{"tcp://broker", &netx.Options{Proxy: "socks5://proxy:1080"}, "proxy URL"},
		{"tcp://user:secret@broker", nil, "user information"},
		{"ws://user:secret@broker/mqtt", nil, "user information"},
		{"wss://broker/mqtt#frag", nil, "fragment"},
		{"unix://relative/path", nil, "unix:///absolute/path"},
		{"tcp://broker:99999", nil, "bad port"},
		{"tcp://broker:0", nil, "bad port"},
		{"tcp://broker", &netx.Options{Proxy: "http://user:secret@proxy:99999"}, `proxy URL http://user:xxxxx@proxy:99999: bad port "99999"`},
		{"tcp://broker", &netx.Options{Proxy: "http://user:secret@[bad"}, "proxy URL"},
	} {
		_, err := netx.URL(tc.url, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("URL(%q) = %v, want an error about %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("URL(%q): error %q leaks the password", tc.url, err)
		}
		if tc.want == "scheme" && !errors.Is(err, netx.ErrScheme) {
			t.Errorf("URL(%q): %v is not ErrScheme", tc.url, err)
		}
	}
}

// TestDefaultPorts: a URL without a port dials the scheme's default.
func TestDefaultPorts(t *testing.T) {
	for url, want := range map[string]string{
		"tcp://broker.test":       "broker.test:1883",
		"mqtt://broker.test":      "broker.test:1883",
		"ssl://broker.test":       "broker.test:8883",
		"tls://broker.test":       "broker.test:8883",
		"mqtts://broker.test":     "broker.test:8883",
		"ws://broker.test/mqtt":   "broker.test:80",
		"wss://broker.test/mqtt":  "broker.test:443",
		"tcp://broker.test:11883": "broker.test:11883",
		"ws://[::1]/mqtt":         "[::1]:80",
	} {
		dialed := make(chan string, 1)
		d := mustURL(t, url, &netx.Options{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed <- addr
			return nil, errors.New("stop here")
		}})
		d.Dial(context.Background())
		if got := <-dialed; got != want {
			t.Errorf("%s dialled %s, want %s", url, got, want)
		}
	}
}

// TestSNI records the server name of the ClientHello (field case BR-25):
// the host name without port for mqtts and wss, none for an IP address, the
// override when one is given; and the Host header of the upgrade keeps the
// port.
func TestSNI(t *testing.T) {
	pki := testcerts.New(t)
	var mu sync.Mutex
	var sni, host string
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pki.ServerKeyPair},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			mu.Lock()
			sni = hello.ServerName
			mu.Unlock()
			return nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u := ws.Upgrader{
					Protocol: func(p []byte) bool { return string(p) == "mqtt" },
					OnHost: func(h []byte) error {
						mu.Lock()
						host = string(h)
						mu.Unlock()
						return nil
					},
				}
				br := bufio.NewReader(c)
				if b, _ := br.Peek(1); len(b) == 1 && b[0] == 'G' {
					u.Upgrade(struct {
						io.Reader
						io.Writer
					}{br, c})
				}
				io.Copy(io.Discard, br)
			}()
		}
	}()
	p := port(t, l.Addr().String())
	for _, tc := range []struct {
		url, sni, host string
		opts           netx.Options
	}{
		{url: "mqtts://broker.example.test:" + p, sni: "broker.example.test"},
		{url: "wss://broker.example.test:" + p + "/mqtt", sni: "broker.example.test", host: "broker.example.test:" + p},
		{url: "mqtts://127.0.0.1:" + p, sni: ""},
		{url: "mqtts://ingress.internal:" + p, sni: "localhost", opts: netx.Options{ServerName: "localhost"}},
	} {
		tc.opts.CAFile, tc.opts.NetDial = pki.CAFile, toLoopback
		mu.Lock()
		sni, host = "unset", ""
		mu.Unlock()
		conn, err := mustURL(t, tc.url, &tc.opts).Dial(context.Background())
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		conn.Close()
		mu.Lock()
		if sni != tc.sni || (tc.host != "" && host != tc.host) {
			t.Errorf("%s: SNI %q Host %q, want %q %q", tc.url, sni, host, tc.sni, tc.host)
		}
		mu.Unlock()
	}
}

// TestSilentPeers: a listener that accepts TCP and then never answers the
// TLS ClientHello, the WebSocket upgrade or CONNECT makes client.Dial fail
// within its connect timeout, naming the stage, with nothing left behind
// (field case BR-18).
func TestSilentPeers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	addr := l.Addr().String()
	for _, tc := range []struct{ url, stage string }{
		{"tcp://" + addr, "CONNACK"},
		{"mqtts://" + addr, "handshake"},
		{"ws://" + addr + "/mqtt", "handshake"},
		{"wss://" + addr + "/mqtt", "handshake"},
	} {
		start := time.Now()
		_, err := client.Dial(context.Background(), mustURL(t, tc.url, nil), &client.Options{ConnectTimeout: time.Second})
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("%s: took %v", tc.url, elapsed)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tc.stage) {
			t.Errorf("%s: err = %v, want a deadline error naming %q", tc.url, err, tc.stage)
		}
	}
	// An unroutable address (TEST-NET-1): the dial fails within the
	// timeout, by it or at once where the network says so.
	for _, u := range []string{"tcp://192.0.2.1:1883", "ws://192.0.2.1:80/mqtt"} {
		start := time.Now()
		_, err := client.Dial(context.Background(), mustURL(t, u, nil), &client.Options{ConnectTimeout: time.Second})
		if elapsed := time.Since(start); err == nil || elapsed > 3*time.Second || !strings.Contains(err.Error(), "dial") {
			t.Errorf("%s: %v after %v", u, err, elapsed)
		}
	}
}

// proxy is an HTTP CONNECT proxy for the tests: it requires user:secret,
// maps any host to 127.0.0.1 and counts the tunnels it opened.
type proxy struct {
	l       net.Listener
	mu      sync.Mutex
	tunnels []string
}

// envProxyAddr is TestProxyFromEnvironment's proxy address, the same in
// every run of a process.
var envProxyAddr string

func newProxy(t *testing.T) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	go p.serve()
	t.Cleanup(func() { l.Close() })
	return p
}

func (p *proxy) url(auth string) string { return "http://" + auth + p.l.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:secret"))
			if req.Method != http.MethodConnect || req.Header.Get("Proxy-Authorization") != want {
				io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
				return
			}
			_, port, _ := net.SplitHostPort(req.Host)
			up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
			if err != nil {
				io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
				return
			}
			defer up.Close()
			p.mu.Lock()
			p.tunnels = append(p.tunnels, req.Host)
			p.mu.Unlock()
			io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			go func() { io.Copy(up, br); up.Close() }()
			io.Copy(c, up)
		}()
	}
}

func (p *proxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tunnels)
}

// TestProxy: every TCP-based transport runs through an HTTP CONNECT proxy
// with basic authentication; wrong credentials give ErrProxy with the
// proxy's status.
func TestProxy(t *testing.T) {
	b, pki := broker(t)
	px := newProxy(t)
	for _, u := range []string{
		"tcp://" + b.TCPAddr,
		"mqtts://broker.example.test:" + port(t, b.TLSAddr),
		b.WSURL,
		"wss://broker.example.test:" + port(t, b.WSSURL) + "/mqtt",
	} {
		before := px.count()
		if err := roundTrip(t, mustURL(t, u, &netx.Options{CAFile: pki.CAFile, Proxy: px.url("user:secret@")}), "proxied"); err != nil {
			t.Errorf("%s through the proxy: %v", u, err)
		}
		if px.count() != before+1 {
			t.Errorf("%s did not go through the proxy", u)
		}
	}
	err := roundTrip(t, mustURL(t, "tcp://"+b.TCPAddr, &netx.Options{Proxy: px.url("user:wrong@")}), "denied")
	var status *netx.HTTPStatusError
	if !errors.Is(err, netx.ErrProxy) || !errors.As(err, &status) || status.StatusCode != 407 {
		t.Errorf("wrong proxy credentials: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error shows the proxy password: %v", err)
	}
}

// TestProxyFromEnvironment: with ProxyFromEnvironment, HTTP_PROXY is used
// for a plain transport and NO_PROXY is honoured. (http.ProxyFromEnvironment
// reads the environment once per process; no other test of this package
// calls it, and the proxy listens on the same address for -count above 1.)
func TestProxyFromEnvironment(t *testing.T) {
	b, _ := broker(t)
	if envProxyAddr == "" {
		envProxyAddr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", envProxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	envProxyAddr = l.Addr().String()
	px := &proxy{l: l}
	go px.serve()
	t.Cleanup(func() { l.Close() })
	t.Setenv("HTTP_PROXY", px.url("user:secret@"))
	t.Setenv("NO_PROXY", "direct.example.test")
	before := px.count()
	u := "tcp://broker.example.test:" + port(t, b.TCPAddr)
	if err := roundTrip(t, mustURL(t, u, &netx.Options{ProxyFromEnvironment: true}), "env"); err != nil {
		t.Fatal(err)
	}
	if px.count() != before+1 {
		t.Fatalf("%d tunnels, want 1", px.count()-before)
	}
	direct := "tcp://direct.example.test:" + port(t, b.TCPAddr)
	if err := roundTrip(t, mustURL(t, direct, &netx.Options{ProxyFromEnvironment: true, NetDial: toLoopback}), "noproxy"); err != nil {
		t.Fatal(err)
	}
	if px.count() != before+1 {
		t.Fatalf("NO_PROXY host went through the proxy")
	}
}
