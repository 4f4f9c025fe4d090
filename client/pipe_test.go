package client

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// pipeBroker is a scripted server over net.Pipe, for tests inside a
// testing/synctest bubble: every Dial makes a pipe and hands its server
// end to the test. A pipe buffers nothing, so a peer that stops reading
// blocks the client's next write at once, and time only passes when every
// goroutine of the bubble waits.
type pipeBroker struct {
	t     testing.TB
	conns chan net.Conn
}

func newPipeBroker(t testing.TB) *pipeBroker {
	return &pipeBroker{t: t, conns: make(chan net.Conn, 16)}
}

// Dial implements Dialer.
func (b *pipeBroker) Dial(ctx context.Context) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case b.conns <- s:
		return c, nil
	case <-ctx.Done():
		c.Close()
		s.Close()
		return nil, ctx.Err()
	}
}

// accept returns the server end of the next connection; the test fails
// when none comes within a minute of the bubble's time.
func (b *pipeBroker) accept() *peer {
	b.t.Helper()
	select {
	case c := <-b.conns:
		b.t.Cleanup(func() { c.Close() })
		return &peer{t: b.t, conn: c, dec: packet.NewDecoder(c, 0), wait: time.Hour}
	case <-time.After(time.Minute):
		b.t.Fatal("no connection")
		return nil
	}
}

// dialing starts Dial of a Client through d in the background and returns
// the wait for it: the Client, once Dial returned; a failed Dial fails the
// test. The server's side is the caller's: acceptConnect, or reading what
// the client writes before Dial returns.
func dialing(t testing.TB, d Dialer, opts *Options) (wait func() *Client) {
	ch := make(chan *Client, 1)
	go func() {
		c, err := Dial(context.Background(), d, opts)
		if err != nil {
			t.Errorf("Dial: %v", err)
		}
		ch <- c
	}()
	return func() *Client {
		t.Helper()
		c := <-ch
		if c == nil {
			t.FailNow()
		}
		return c
	}
}

// acceptConnect takes b's next connection, reads its CONNECT and answers
// ack.
func acceptConnect(t testing.TB, b *pipeBroker, ack *packet.Connack) *peer {
	t.Helper()
	p := b.accept()
	p.expect(packet.CONNECT)
	p.send(ack)
	return p
}

// dialPipe connects a Client to a pipe broker inside the current bubble,
// answering its CONNECT with ack (nil: CONNACK 0), and returns both ends.
// The Client is closed at the end of the test.
func dialPipe(t *testing.T, opts *Options, ack *packet.Connack) (*Client, *peer, *pipeBroker) {
	t.Helper()
	b := newPipeBroker(t)
	if ack == nil {
		ack = &packet.Connack{}
	}
	wait := dialing(t, b, opts)
	p := acceptConnect(t, b, ack)
	c := wait()
	t.Cleanup(func() { c.Close(); <-c.Done() })
	return c, p, b
}

// TestPipeKeepAlive is a first check that the client's clock works inside
// a bubble: an idle client sends PINGREQ after exactly the keep alive.
func TestPipeKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, p, _ := dialPipe(t, &Options{ClientID: "ka", KeepAlive: 10 * time.Second}, nil)
		start := time.Now()
		p.expect(packet.PINGREQ)
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("PINGREQ after %v, want 10s", d)
		}
		p.send(&packet.Pingresp{})
		p.expect(packet.PINGREQ)
		if d := time.Since(start); d != 20*time.Second {
			t.Errorf("second PINGREQ after %v, want 20s", d)
		}
	})
}
