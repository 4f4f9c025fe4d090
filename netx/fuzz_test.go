package netx

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// onceConn is an in-memory net.Conn whose Read serves data once, then EOF.
type onceConn struct {
	data   []byte
	closed bool
}

func (c *onceConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *onceConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *onceConn) Close() error                     { c.closed = true; return nil }
func (c *onceConn) LocalAddr() net.Addr              { return nil }
func (c *onceConn) RemoteAddr() net.Addr             { return nil }
func (c *onceConn) SetDeadline(time.Time) error      { return nil }
func (c *onceConn) SetReadDeadline(time.Time) error  { return nil }
func (c *onceConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzWebSocketRead feeds arbitrary server bytes to Read: it must never
// panic, never return more payload than was sent, and always end in an
// error.
func FuzzWebSocketRead(f *testing.F) {
	for _, s := range []string{
		"82 03 30 06 00 82 05 04 74 65 73 74",
		"02 03 30 06 00 89 00 80 05 04 74 65 73 74",
		"89 04 01 02 03 04 82 00 82 02 D0 00",
		"81 04 74 65 73 74",
		"88 02 03 E8",
		"88 05 03 E8 62 79 65",
		"82 7F 7F FF FF FF FF FF FF FF",
		"82 7E 00 7E",
		"C2 00 8A 00 09 00",
	} {
		f.Add(hx(f, s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, bufSize uint8) {
		opts := defaultOptions()
		opts.MaxFrameSize = 1 << 16
		c := newWSConn(&onceConn{data: append([]byte(nil), data...)}, nil, opts)
		buf := make([]byte, int(bufSize)+1)
		total := 0
		for range len(data) + 2 {
			n, err := c.Read(buf)
			total += n
			if total > len(data) {
				t.Fatalf(
					"read %d payload bytes from %d input bytes",
					total, len(data))
			}
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrProtocol) {
					return
				}
				t.Fatalf(
					"unexpected error %v",
					err)
			}
			if n == 0 {
				t.Fatal("Read returned 0, nil")
			}
		}
		t.Fatal("Read did not reach an error")
	})
}
