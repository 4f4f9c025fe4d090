package netx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWebSocketUpgradeRequest(t *testing.T) {
	reqs := make(chan *http.Request, 1)
	s := newTestServer(t, func(c net.Conn) {
		req, err := readUpgrade(c)
		if err != nil {
			t.Errorf(
				"server: %v",
				err)
			return
		}
		reqs <- req
		_, _ = io.WriteString(c, switchingAnswer(req, "Sec-WebSocket-Protocol: mqtt\r\n"))
	})
	opts := &WebSocketOptions{
		Header: http.Header{
			"x-test": {"one", "two"},
			"Host":   {"broker.example"},
		},
		Origin: "https://app.example",
	}
	d := WebSocket(s.url("/mqtt?client=a"), opts)
	// The dialer copied the options.
	opts.Header.Set("X-Test", "changed")
	opts.Origin = "changed"

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf(
			"Dial: %v",
			err)
	}
	defer c.Close()

	req := <-reqs
	got := map[string]any{
		"method":   req.Method,
		"uri":      req.RequestURI,
		"host":     req.Host,
		"protocol": req.Header.Values("Sec-WebSocket-Protocol"),
		"origin":   req.Header.Get("Origin"),
		"x-test":   req.Header.Values("X-Test"),
		"upgrade":  req.Header.Get("Upgrade"),
		"version":  req.Header.Get("Sec-WebSocket-Version"),
	}
	want := map[string]any{
		"method":   "GET",
		"uri":      "/mqtt?client=a",
		"host":     "broker.example",
		"protocol": []string{"mqtt"},
		"origin":   "https://app.example",
		"x-test":   []string{"one", "two"},
		"upgrade":  "websocket",
		"version":  "13",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf(
			"upgrade request (-want +got):\n%s",
			diff)
	}
}

// TestWebSocketSubprotocol (BR-24): "mqtt" offered [MQTT-6.0.0-3] and
// required in the answer [MQTT-6.0.0-4]; one not offered fails (RFC 6455
// section 4.1); a missing one fails unless AllowMissingSubprotocol.
func TestWebSocketSubprotocol(t *testing.T) {
	tests := []struct {
		name    string
		answer  string // extra header lines of the 101 answer
		allow   bool   // AllowMissingSubprotocol
		wantErr bool
	}{
		{
			name:   "mqtt selected",
			answer: "Sec-WebSocket-Protocol: mqtt\r\n",
		},
		{
			name:    "not offered",
			answer:  "Sec-WebSocket-Protocol: mqttv3.1\r\n",
			wantErr: true,
		},
		{
			name:    "not offered, lenient",
			answer:  "Sec-WebSocket-Protocol: mqttv3.1\r\n",
			allow:   true,
			wantErr: true,
		},
		{
			name:    "missing",
			answer:  "",
			wantErr: true,
		},
		{
			name:   "missing, lenient",
			answer: "",
			allow:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closed := make(chan error, 1)
			s := newTestServer(t, func(c net.Conn) {
				req, err := readUpgrade(c)
				if err != nil {
					closed <- err
					return
				}
				_, _ = io.WriteString(c, switchingAnswer(req, tt.answer))
				// Tell whether the client closed its socket.
				_ = c.SetReadDeadline(time.Now().Add(testTimeout))
				_, err = c.Read(make([]byte, 1))
				closed <- err
			})
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			c, err := WebSocket(s.url("/mqtt"), &WebSocketOptions{
				AllowMissingSubprotocol: tt.allow,
			}).Dial(ctx)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf(
						"Dial: %v",
						err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf(
					"Dial succeeded; want %v",
					ErrSubprotocol)
			}
			if !errors.Is(err, ErrSubprotocol) {
				t.Errorf(
					"Dial error %v; want %v in the chain",
					err, ErrSubprotocol)
			}
			if !strings.HasPrefix(err.Error(), "netx: websocket ws://") {
				t.Errorf(
					"Dial error %q lacks the netx prefix",
					err)
			}
			serr := <-closed
			if !errors.Is(serr, io.EOF) && !isReset(serr) {
				t.Errorf(
					"server read %v; want the client to close the socket",
					serr)
			}
		})
	}
}

func TestWebSocketUpgraderSelectsMQTT(t *testing.T) {
	client, server := dialScripted(t, nil)
	_, err := server.Write(hx(t, "82 02 D0 00"))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	_, err = io.ReadFull(client, got)
	if err != nil {
		t.Fatalf(
			"Read: %v",
			err)
	}
	if diff := cmp.Diff(hx(t, "D0 00"), got); diff != "" {
		t.Errorf(
			"read (-want +got):\n%s",
			diff)
	}
}

func TestWebSocketUpgraderSelectsNone(t *testing.T) {
	s := newTestServer(t, func(c net.Conn) {
		_ = upgradeMQTT(c, "")
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := WebSocket(s.url("/mqtt"), nil).Dial(ctx)
	if !errors.Is(err, ErrSubprotocol) {
		t.Fatalf(
			"Dial error %v; want %v",
			err, ErrSubprotocol)
	}
	c, err := WebSocket(s.url("/mqtt"), &WebSocketOptions{AllowMissingSubprotocol: true}).Dial(ctx)
	if err != nil {
		t.Fatalf(
			"lenient Dial: %v",
			err)
	}
	c.Close()
}

func TestWebSocketHTTPStatus(t *testing.T) {
	s := newTestServer(t, func(c net.Conn) {
		_, err := readUpgrade(c)
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := WebSocket(s.url("/mqtt"), nil).Dial(ctx)
	if err == nil {
		t.Fatal("Dial succeeded against a 400 answer")
	}
	var se *HTTPStatusError
	if !errors.As(err, &se) {
		t.Fatalf(
			"Dial error %v; want a *HTTPStatusError in the chain",
			err)
	}
	want := &HTTPStatusError{StatusCode: 400, Status: "Bad Request"}
	if diff := cmp.Diff(want, se); diff != "" {
		t.Errorf(
			"status error (-want +got):\n%s",
			diff)
	}
	if !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "handshake") {
		t.Errorf(
			"Dial error %q should name the stage and the status",
			err)
	}
}

// silentServer accepts TCP connections and never answers; it reports the
// result of reading each connection to the end.
func silentServer(t *testing.T) (*testServer, chan error) {
	ends := make(chan error, 1)
	s := newTestServer(t, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		_, err := io.Copy(io.Discard, c)
		if err == nil {
			err = io.EOF
		}
		ends <- err
	})
	return s, ends
}

func TestWebSocketHandshakeDeadline(t *testing.T) {
	s, ends := silentServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := WebSocket(s.url("/mqtt"), nil).Dial(ctx)
	elapsed := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded against a silent server")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf(
			"Dial error %v; want context.DeadlineExceeded in the chain",
			err)
	}
	if elapsed > 2*time.Second {
		t.Errorf(
			"Dial took %v with a 300ms deadline",
			elapsed)
	}
	serr := <-ends
	if !errors.Is(serr, io.EOF) && !isReset(serr) {
		t.Errorf(
			"server saw %v; want the client to close the socket",
			serr)
	}
}

func TestWebSocketHandshakeCancel(t *testing.T) {
	s, ends := silentServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	c, err := WebSocket(s.url("/mqtt"), nil).Dial(ctx)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded against a silent server")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf(
			"Dial error %v; want context.Canceled in the chain",
			err)
	}
	<-ends
}

func TestWebSocketDialCancelled(t *testing.T) {
	var dials atomic.Int32
	opts := &WebSocketOptions{
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("must not be called")
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := WebSocket("ws://127.0.0.1:1/mqtt", opts).Dial(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf(
			"Dial error %v; want context.Canceled",
			err)
	}
	if n := dials.Load(); n != 0 {
		t.Errorf(
			"NetDial called %d times with a cancelled ctx",
			n)
	}
}

func TestWebSocketNetDial(t *testing.T) {
	s := newTestServer(t, func(c net.Conn) {
		_ = upgradeMQTT(c, Subprotocol)
	})
	var got []string
	opts := &WebSocketOptions{
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			got = append(got, network+" "+addr)
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr())
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := WebSocket("ws://broker.invalid/mqtt", opts).Dial(ctx)
	if err != nil {
		t.Fatalf(
			"Dial: %v",
			err)
	}
	c.Close()
	if diff := cmp.Diff([]string{"tcp broker.invalid:80"}, got); diff != "" {
		t.Errorf(
			"NetDial calls (-want +got):\n%s",
			diff)
	}
}

func TestWebSocketConnectError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err = WebSocket("ws://"+addr+"/mqtt", nil).Dial(ctx)
	if err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	msg := err.Error()
	if want := ": dial tcp " + addr + ": "; !strings.Contains(msg, want) {
		t.Errorf(
			"Dial error %q should name the connect stage, %q",
			msg, want)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf(
			"Dial error %v; want a *net.OpError in the chain",
			err)
	}
}

func TestWebSocketBadConfig(t *testing.T) {
	tests := []struct {
		name string
		url  string
		opts *WebSocketOptions
	}{
		{
			name: "http scheme",
			url:  "http://127.0.0.1:1/mqtt",
		},
		{
			name: "no host",
			url:  "ws:///mqtt",
		},
		{
			name: "not a URL",
			url:  "broker:1883",
		},
		{
			name: "reserved header",
			url:  "ws://127.0.0.1:1/mqtt",
			opts: &WebSocketOptions{
				Header: http.Header{"sec-websocket-protocol": {"mqttv3.1"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts == nil {
				opts = &WebSocketOptions{}
			}
			opts.NetDial = func(context.Context, string, string) (net.Conn, error) {
				t.Error("NetDial called despite a bad configuration")
				return nil, errors.New("unreachable")
			}
			_, err := WebSocket(tt.url, opts).Dial(context.Background())
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			if !strings.HasPrefix(err.Error(), "netx: websocket ") {
				t.Errorf(
					"error %q lacks the netx prefix",
					err)
			}
		})
	}
}

// TestWebSocketBytesAfterAnswer covers frames the server sends in the same
// segment as its 101 answer: gobwas hands them over in a bufio.Reader and
// they must come out before anything read from the socket.
func TestWebSocketBytesAfterAnswer(t *testing.T) {
	s := newTestServer(t, func(c net.Conn) {
		req, err := readUpgrade(c)
		if err != nil {
			return
		}
		answer := switchingAnswer(req, "Sec-WebSocket-Protocol: mqtt\r\n")
		_, _ = c.Write(append([]byte(answer), hx(t, "82 04 20 02 00 00 82 01 D0")...))
		time.Sleep(50 * time.Millisecond)
		_, _ = c.Write(hx(t, "82 01 00"))
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := WebSocket(s.url("/mqtt"), nil).Dial(ctx)
	if err != nil {
		t.Fatalf(
			"Dial: %v",
			err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	got := make([]byte, 6)
	_, err = io.ReadFull(c, got)
	if err != nil {
		t.Fatalf(
			"Read: %v",
			err)
	}
	if diff := cmp.Diff(hx(t, "20 02 00 00 D0 00"), got); diff != "" {
		t.Errorf(
			"stream (-want +got):\n%s",
			diff)
	}
}

func TestWebSocketTLS(t *testing.T) {
	cert, pool := selfSignedCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		err = upgradeMQTT(c, Subprotocol)
		if err != nil {
			t.Errorf(
				"server upgrade: %v",
				err)
			return
		}
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		f := readClientFrame(t, c)
		_, _ = c.Write(append([]byte{0x82, byte(len(f.Payload))}, f.Payload...))
		_, _ = io.Copy(io.Discard, c)
	}()
	defer func() {
		ln.Close()
		<-done
	}()

	opts := &WebSocketOptions{TLSConfig: &tls.Config{RootCAs: pool}}
	d := WebSocket("wss://"+ln.Addr().String()+"/mqtt", opts)
	opts.TLSConfig.RootCAs = nil // copied by WebSocket
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf(
			"Dial: %v",
			err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	_, err = c.Write(hx(t, "C0 00"))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	_, err = io.ReadFull(c, got)
	if err != nil {
		t.Fatalf(
			"Read: %v",
			err)
	}
	if diff := cmp.Diff(hx(t, "C0 00"), got); diff != "" {
		t.Errorf(
			"echo (-want +got):\n%s",
			diff)
	}
}

func TestWebSocketTLSUntrusted(t *testing.T) {
	cert, _ := selfSignedCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = upgradeMQTT(c, Subprotocol)
	}()
	defer func() {
		ln.Close()
		<-done
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err = WebSocket("wss://"+ln.Addr().String()+"/mqtt", nil).Dial(ctx)
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Errorf(
			"Dial error %v; want x509.UnknownAuthorityError",
			err)
	}
}

// selfSignedCert makes a certificate for 127.0.0.1 and a pool trusting it.
func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "netx test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestWebSocketURLRefused: user information, which the handshake would not
// use, and a fragment, which RFC 6455 section 3 forbids, are refused before
// anything is dialled, without the password in the error.
func TestWebSocketURLRefused(t *testing.T) {
	for _, u := range []string{
		"ws://user:secret@127.0.0.1:1/mqtt",
		"ws://127.0.0.1:1/mqtt#frag",
		"ws://127.0.0.1:1/mqtt#",
	} {
		_, err := WebSocket(u, nil).Dial(context.Background())
		if err == nil {
			t.Errorf("%s: Dial succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), "dial tcp") {
			t.Errorf("%s: dialled: %v", u, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error %q leaks the URL password", u, err)
		}
	}
}
