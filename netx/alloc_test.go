package netx

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// loopConn is an in-memory net.Conn: Read serves data over and over, Write
// discards. It allocates nothing, so AllocsPerRun sees only wsConn.
type loopConn struct {
	data    []byte
	off     int
	written int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

func (c *loopConn) Write(p []byte) (int, error) {
	c.written += len(p)
	return len(p), nil
}

func (c *loopConn) Close() error                     { return nil }
func (c *loopConn) LocalAddr() net.Addr              { return nil }
func (c *loopConn) RemoteAddr() net.Addr             { return nil }
func (c *loopConn) SetDeadline(time.Time) error      { return nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }

func defaultOptions() *WebSocketOptions {
	d := WebSocket("ws://127.0.0.1/mqtt", nil).(*wsDialer)
	return &d.opts
}

func TestWebSocketWriteAllocs(t *testing.T) {
	for _, size := range []int{64, 16 << 10} {
		fake := &loopConn{data: []byte{0}}
		c := newWSConn(fake, nil, defaultOptions())
		p := bytes.Repeat([]byte{0x5A}, size)
		allocs := testing.AllocsPerRun(1000, func() {
			_, err := c.Write(p)
			if err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf(
				"Write of %d bytes: %v allocations; want 0",
				size, allocs)
		}
	}
}

// TestWebSocketReadAllocs reads a stream that mixes plain frames, pings
// (answered with pongs), pongs, empty frames and fragmented messages.
func TestWebSocketReadAllocs(t *testing.T) {
	payload := func(n int) string { return strings.Repeat("A5 ", n) }
	cycle := hx(t, ""+
		"82 40 "+payload(64)+
		"89 04 01 02 03 04 "+
		"8A 00 "+
		"82 00 "+
		"02 10 "+payload(16)+
		"89 00 "+
		"80 30 "+payload(48)+
		"82 7E 01 00 "+payload(256))
	const perCycle = 64 + 16 + 48 + 256

	fake := &loopConn{data: cycle}
	c := newWSConn(fake, nil, defaultOptions())
	buf := make([]byte, perCycle)
	allocs := testing.AllocsPerRun(1000, func() {
		_, err := io.ReadFull(c, buf)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf(
			"Read: %v allocations per cycle; want 0",
			allocs)
	}
	if fake.written == 0 {
		t.Error("no pongs written")
	}
	// Small reads split payloads across calls.
	small := make([]byte, 7)
	allocs = testing.AllocsPerRun(1000, func() {
		_, err := c.Read(small)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf(
			"small Read: %v allocations; want 0",
			allocs)
	}
}

// TestWebSocketLoopbackAllocs measures Write and Read over a real socket.
func TestWebSocketLoopbackAllocs(t *testing.T) {
	frame := hx(t, "82 40 "+strings.Repeat("A5 ", 64))
	stream := bytes.Repeat(frame, 1024)
	s := newTestServer(t, func(c net.Conn) {
		if upgradeMQTT(c, Subprotocol) != nil {
			return
		}
		go func() { _, _ = io.Copy(io.Discard, c) }()
		for {
			_, err := c.Write(stream)
			if err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := WebSocket(s.url("/mqtt"), nil).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))

	p := make([]byte, 64)
	allocs := testing.AllocsPerRun(1000, func() {
		_, err := c.Write(p)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf(
			"loopback Write: %v allocations; want 0",
			allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		_, err := io.ReadFull(c, p)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf(
			"loopback Read: %v allocations; want 0",
			allocs)
	}
}
