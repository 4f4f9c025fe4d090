package rawmqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// timeout bounds dialling and each read that expects a packet or the end
// of the connection.
const timeout = 5 * time.Second

// Client is one MQTT connection driven step by step by a test. Its methods
// report failures to T, which a test may swap for a subtest's.
type Client struct {
	T    testing.TB
	Conn net.Conn
	// R reads the bytes the server sends: Conn through a buffer, or over
	// WebSocket the payloads of its binary messages as one stream.
	R io.Reader
	// Version is the protocol level that Connect, Connack and Subscribe
	// speak: 4 (MQTT 3.1.1) unless set to 5 (MQTT 5).
	Version byte

	write func([]byte) error
}

// NewClient drives conn, a byte stream such as TCP or TLS, and closes it
// when the test ends.
func NewClient(t testing.TB, conn net.Conn) *Client {
	t.Cleanup(func() { conn.Close() })
	return &Client{
		T:       t,
		Conn:    conn,
		R:       bufio.NewReader(conn),
		Version: 4,
		write:   func(b []byte) error { _, err := conn.Write(b); return err },
	}
}

// DialTCP connects to addr over TCP.
func DialTCP(t testing.TB, addr string) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return NewClient(t, conn)
}

// DialTLS connects to addr over TLS, trusting the CAs in pool (the
// system's if nil) and verifying the server's name or IP address in addr.
func DialTLS(t testing.TB, addr string, pool *x509.CertPool) *Client {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{RootCAs: pool}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	return NewClient(t, conn)
}

// DialWS connects over WebSocket (a ws:// or wss:// url) with gobwas/ws,
// asking for the subprotocol mqtt, which the server must choose. A wss://
// server must have a certificate from a CA in pool (the system's if nil).
// Each write is one binary message; reads see the binary messages as one
// byte stream, and any other message is a read error.
func DialWS(t testing.TB, url string, pool *x509.CertPool) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := ws.Dialer{Protocols: []string{"mqtt"}}
	if pool != nil {
		d.TLSConfig = &tls.Config{RootCAs: pool}
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	if hs.Protocol != "mqtt" {
		t.Fatalf("subprotocol %q, want mqtt", hs.Protocol)
	}
	src := io.Reader(conn)
	if br != nil {
		src = br
	}
	return &Client{
		T:    t,
		Conn: conn,
		R: &wsStream{rw: struct {
			io.Reader
			io.Writer
		}{src, conn}},
		Version: 4,
		write:   func(b []byte) error { return wsutil.WriteClientBinary(conn, b) },
	}
}

// wsStream concatenates the payloads of binary messages from the server.
type wsStream struct {
	rw  io.ReadWriter
	buf []byte
}

func (s *wsStream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		data, op, err := wsutil.ReadServerData(s.rw)
		if err != nil {
			return 0, err
		}
		if op != ws.OpBinary {
			return 0, fmt.Errorf("server sent opcode %v", op)
		}
		s.buf = data
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// Send writes b, as one WebSocket message over WebSocket.
func (c *Client) Send(b []byte) {
	c.T.Helper()
	if err := c.write(b); err != nil {
		c.T.Fatalf("write: %v", err)
	}
}

// ReadWithin reads a packet, waiting at most d, and returns the error
// rather than reporting it.
func (c *Client) ReadWithin(d time.Duration) (Packet, error) {
	c.Conn.SetReadDeadline(time.Now().Add(d))
	return ReadPacket(c.R)
}

// Read reads a packet.
func (c *Client) Read() Packet {
	c.T.Helper()
	p, err := c.ReadWithin(timeout)
	if err != nil {
		c.T.Fatalf("read: %v", err)
	}
	return p
}

// Expect reads a packet of type typ.
func (c *Client) Expect(typ byte) Packet {
	c.T.Helper()
	p := c.Read()
	if p.Type != typ {
		c.T.Fatalf("got %v, want packet type %d", p, typ)
	}
	return p
}

// Connack sends connect and reads the CONNACK: it returns the acknowledge
// flags (bit 0: session present) and the return code (MQTT 3.1.1) or
// reason code (MQTT 5). The body must be two bytes, or at least two (with
// properties) if Version is 5.
func (c *Client) Connack(connect []byte) (flags, code byte) {
	c.T.Helper()
	c.Send(connect)
	p := c.Expect(TypeConnack)
	if len(p.Body) < 2 || c.Version < 5 && len(p.Body) != 2 {
		c.T.Fatalf("CONNACK body % x, want 2 bytes, or more with MQTT 5", p.Body)
	}
	return p.Body[0], p.Body[1]
}

// Connect sends a CONNECT at Version for clientID and username (none if
// empty) and returns the CONNACK's return or reason code.
func (c *Client) Connect(clientID, username string) byte {
	c.T.Helper()
	_, code := c.Connack(Connect(ConnectOpts{Version: c.Version, ClientID: clientID, Username: username}))
	return code
}

// Subscribe subscribes to filter at qos with packet identifier id and
// returns the SUBACK's return or reason code. The SUBACK must carry id and
// one code (after properties if Version is 5).
func (c *Client) Subscribe(id uint16, filter string, qos byte) byte {
	c.T.Helper()
	c.Send(Subscribe(c.Version, id, filter, qos))
	p := c.Expect(TypeSuback)
	if len(p.Body) < 3 || c.Version < 5 && len(p.Body) != 3 || binary.BigEndian.Uint16(p.Body) != id {
		c.T.Fatalf("SUBACK body % x, want id %d and one code", p.Body, id)
	}
	return p.Body[len(p.Body)-1]
}

// ReadPublish reads an MQTT 3.1.1 PUBLISH and does not acknowledge it.
func (c *Client) ReadPublish() Message {
	c.T.Helper()
	m, err := c.Read().Publish()
	if err != nil {
		c.T.Fatal(err)
	}
	return m
}

// Receive reads an MQTT 3.1.1 PUBLISH and, unless its QoS is 0, answers
// with a PUBACK (the QoS 1 acknowledgement).
func (c *Client) Receive() Message {
	c.T.Helper()
	m := c.ReadPublish()
	if m.QoS > 0 {
		c.Send(Puback(m.ID))
	}
	return m
}

// ExpectClosed checks the server closes the connection without sending
// anything (in particular no DISCONNECT, which MQTT 3.1.1 servers must not
// send).
func (c *Client) ExpectClosed() {
	c.T.Helper()
	p, err := c.ReadWithin(timeout)
	if err == nil {
		c.T.Fatalf("got %v, want the connection closed", p)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.T.Fatalf("connection still open: %v", err)
	}
}

// ExpectSilence checks nothing arrives for d.
func (c *Client) ExpectSilence(d time.Duration) {
	c.T.Helper()
	p, err := c.ReadWithin(d)
	if err == nil {
		c.T.Fatalf("got %v, want nothing", p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.T.Fatalf("read: %v, want a timeout", err)
	}
}
