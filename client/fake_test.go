package client

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// fakeBroker is a scripted server for what no real broker will do:
// malformed bytes, silence, refusals, dropped links. It accepts connections
// on loopback and hands them to the test.
type fakeBroker struct {
	t     testing.TB
	l     net.Listener
	conns chan net.Conn
}

func newFakeBroker(t testing.TB) *fakeBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{t: t, l: l, conns: make(chan net.Conn, 4)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(f.conns)
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range f.conns {
			c.Close()
		}
	})
	return f
}

func (f *fakeBroker) dialer() netx.Dialer { return netx.TCP(f.l.Addr().String()) }

// peer is the server side of one connection.
type peer struct {
	t    testing.TB
	conn net.Conn
	dec  *packet.Decoder
	wait time.Duration // how long next waits; 5 s when zero
}

func (p *peer) timeout() time.Duration {
	if p.wait == 0 {
		return 5 * time.Second
	}
	return p.wait
}

// accept waits for the next connection.
func (f *fakeBroker) accept() *peer {
	f.t.Helper()
	select {
	case c := <-f.conns:
		f.t.Cleanup(func() { c.Close() })
		return &peer{t: f.t, conn: c, dec: packet.NewDecoder(c, 0)}
	case <-time.After(5 * time.Second):
		f.t.Fatal("no connection")
		return nil
	}
}

// next reads the next packet the client sent, within 5 s.
func (p *peer) next() packet.Packet {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(p.timeout()))
	pk, err := p.dec.Next()
	if err != nil {
		p.t.Fatalf("fake broker: reading: %v", err)
	}
	return pk
}

// expect reads the next packet and checks its type.
func (p *peer) expect(want packet.Type) packet.Packet {
	p.t.Helper()
	pk := p.next()
	if pk.Type() != want {
		p.t.Fatalf("fake broker: got %v, want %v", pk.Type(), want)
	}
	return pk
}

// send writes packets, encoded.
func (p *peer) send(ps ...packet.Packet) {
	p.t.Helper()
	var b []byte
	for _, pk := range ps {
		var err error
		if b, err = pk.AppendTo(b); err != nil {
			p.t.Fatal(err)
		}
	}
	p.raw(b)
}

// sendHex writes bytes given as space-separated hex.
func (p *peer) sendHex(s string) {
	p.t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		p.t.Fatal(err)
	}
	p.raw(b)
}

func (p *peer) raw(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("fake broker: writing: %v", err)
	}
}

// expectEOF waits for the client to close the connection.
func (p *peer) expectEOF() {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(p.timeout()))
	for {
		_, err := p.dec.Next()
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		p.t.Fatalf("fake broker: want EOF, got %v", err)
	}
}

// dialFake connects a client to the fake broker, answering CONNECT with
// CONNACK 0, and returns both ends.
func dialFake(t *testing.T, opts *Options) (*Client, *peer) {
	t.Helper()
	f := newFakeBroker(t)
	type result struct {
		c   *Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := Dial(context.Background(), f.dialer(), opts)
		ch <- result{c, err}
	}()
	p := f.accept()
	p.expect(packet.CONNECT)
	p.send(&packet.Connack{})
	r := <-ch
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c, p
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
