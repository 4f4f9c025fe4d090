package netx

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// testTimeout bounds every blocking step of a test so that a bug fails the
// test instead of hanging it.
const testTimeout = 5 * time.Second

// testServer accepts TCP connections on 127.0.0.1 and hands each one to
// handle in its own goroutine. Cleanup closes the listener and every
// accepted connection and waits for all its goroutines.
type testServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newTestServer(tb testing.TB, handle func(c net.Conn)) *testServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf(
			"listen: %v",
			err)
	}
	s := &testServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

func (s *testServer) url(path string) string { return "ws://" + s.addr() + path }

// upgradeMQTT runs the server side of the handshake with gobwas' Upgrader,
// selecting protocol if the client offers it ("" selects none).
func upgradeMQTT(c net.Conn, protocol string) error {
	u := ws.Upgrader{
		Protocol: func(p []byte) bool {
			return protocol != "" && string(p) == protocol
		},
	}
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	_, err := u.Upgrade(c)
	_ = c.SetDeadline(time.Time{})
	return err
}

// readUpgrade reads the client's upgrade request.
func readUpgrade(c net.Conn) (*http.Request, error) {
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	req, err := http.ReadRequest(bufio.NewReader(c))
	_ = c.SetReadDeadline(time.Time{})
	return req, err
}

// switchingAnswer returns a 101 answer to req with the extra header lines
// (each ending in CRLF) and the blank line that ends the head.
func switchingAnswer(req *http.Request, extra string) string {
	const magic = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + magic))
	return "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n" +
		extra + "\r\n"
}

// hx decodes space-separated hex, e.g. "82 02 D0 00".
func hx(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatalf(
			"bad hex %q: %v",
			s, err)
	}
	return b
}

// dialScripted dials a test server that completes the handshake selecting
// "mqtt" with gobwas' Upgrader and returns both ends: the client net.Conn
// and the raw server socket, on which the test writes and reads frames.
func dialScripted(tb testing.TB, opts *WebSocketOptions) (client, server net.Conn) {
	tb.Helper()
	srv := make(chan net.Conn, 1)
	s := newTestServer(tb, func(c net.Conn) {
		err := upgradeMQTT(c, Subprotocol)
		if err != nil {
			tb.Errorf(
				"server upgrade: %v",
				err)
			return
		}
		srv <- c
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	client, err := WebSocket(s.url("/mqtt"), opts).Dial(ctx)
	if err != nil {
		tb.Fatalf(
			"dial: %v",
			err)
	}
	tb.Cleanup(func() { client.Close() })
	select {
	case server = <-srv:
	case <-ctx.Done():
		tb.Fatalf(
			"server did not upgrade: %v",
			ctx.Err())
	}
	deadline := time.Now().Add(testTimeout)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	return client, server
}

// clientFrame is a frame as the server received it, payload unmasked.
type clientFrame struct {
	Header  ws.Header
	Payload []byte
}

// readClientFrame reads one frame the client sent and checks the rules for
// client frames: masked (RFC 6455 section 5.1), FIN set, no reserved bits.
func readClientFrame(tb testing.TB, server net.Conn) clientFrame {
	tb.Helper()
	f, err := ws.ReadFrame(server)
	if err != nil {
		tb.Fatalf(
			"server reading a client frame: %v",
			err)
	}
	if !f.Header.Masked {
		tb.Fatalf(
			"client frame not masked: %+v",
			f.Header)
	}
	if !f.Header.Fin || f.Header.Rsv != 0 {
		tb.Fatalf(
			"client frame with FIN unset or reserved bits: %+v",
			f.Header)
	}
	ws.Cipher(f.Payload, f.Header.Mask, 0)
	return clientFrame{Header: f.Header, Payload: f.Payload}
}

// expectEOF checks that the client closed its socket: the server reads EOF
// (or a reset) with nothing before it.
func expectEOF(tb testing.TB, server net.Conn) {
	tb.Helper()
	var b [1]byte
	n, err := server.Read(b[:])
	if n != 0 || err == nil {
		tb.Fatalf(
			"server read %d bytes, err %v; want the socket closed",
			n, err)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		tb.Fatalf(
			"server read error %v; want EOF",
			err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
