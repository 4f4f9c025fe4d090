package netx

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// closeTimeout bounds how long Close, or a failing Read, waits to send the
// close frame before closing the socket regardless.
const closeTimeout = time.Second

var (
	// errWriteClosed is returned by Write after Close.
	errWriteClosed = fmt.Errorf("netx: websocket write: %w", net.ErrClosed)
	// errCloseSent is returned by Write once the close handshake started;
	// RFC 6455 section 5.5.1 forbids data frames after a close frame.
	errCloseSent = fmt.Errorf("netx: websocket write: close frame already sent: %w", net.ErrClosed)
)

// wsConn is the net.Conn WebSocket returns: MQTT bytes over binary frames.
type wsConn struct {
	conn     net.Conn
	maxFrame int64 // bytes; negative for no bound

	// Read side, guarded by rmu.
	rmu        sync.Mutex
	src        prefixReader
	br         *bufio.Reader
	hr         bytes.Reader                        // parses peeked headers
	rhdr       [ws.MaxHeaderSize]byte              // ws.ReadHeaderBuffer scratch
	ctrl       [ws.MaxControlFramePayloadSize]byte // control frame payload
	remaining  int64                               // unread payload bytes of the current data frame
	fragmented bool                                // inside a fragmented message
	rerr       error                               // sticky read error

	// Write side, guarded by wmu.
	wmu       sync.Mutex
	bw        *bufio.Writer
	whdr      [ws.MaxHeaderSize]byte // ws.WriteHeaderBuffer scratch
	wctrl     [2]byte                // close frame payload
	rng       *rand.ChaCha8          // masking keys
	closeSent bool
	werr      error // sticky write error

	closeOnce sync.Once
	closeErr  error
}

// newWSConn wraps an upgraded connection. br, if not nil, holds bytes the
// server sent after its upgrade answer. opts must have its defaults filled
// in.
func newWSConn(conn net.Conn, br *bufio.Reader, opts *WebSocketOptions) *wsConn {
	c := &wsConn{
		conn:     conn,
		maxFrame: opts.MaxFrameSize,
		src:      prefixReader{br: br, conn: conn},
		bw:       bufio.NewWriterSize(conn, opts.WriteBufferSize),
	}
	c.br = bufio.NewReaderSize(&c.src, opts.ReadBufferSize)
	// RFC 6455 section 10.3: masking keys must be unpredictable. A ChaCha8
	// stream per connection, keyed from the operating system's CSPRNG, gives
	// that without a system call per frame.
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails, see crypto/rand.Read
	c.rng = rand.NewChaCha8(seed)
	return c
}

// Read implements net.Conn; see WebSocket for its behaviour.
func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return 0, c.rerr
	}
	if len(p) == 0 {
		return 0, nil
	}
	for c.remaining == 0 {
		err := c.nextFrame()
		if err != nil {
			return 0, c.readError(err)
		}
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.br.Read(p)
	c.remaining -= int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		err = c.readError(err)
		if n > 0 {
			// Deliver the bytes; a sticky error comes back next time.
			return n, nil
		}
		return 0, err
	}
	return n, nil
}

// readError records err as sticky unless it is a deadline, which leaves the
// stream intact: every partially received frame header stays in the buffer.
func (c *wsConn) readError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.rerr = err
	return err
}

// nextFrame reads frames until one starts a data payload (which may be
// empty) and handles control frames on the way. It only consumes a frame's
// bytes once they are all buffered (the header, and for a control frame the
// payload too), so a read deadline never splits a frame.
func (c *wsConn) nextFrame() error {
	b, err := c.br.Peek(2)
	if err != nil {
		return c.peekError(err)
	}
	hn := 2
	if b[1]&0x80 != 0 {
		hn += 4
	}
	switch b[1] & 0x7f {
	case 126:
		hn += 2
	case 127:
		hn += 8
	}
	b, err = c.br.Peek(hn)
	if err != nil {
		return c.peekError(err)
	}
	c.hr.Reset(b)
	h, err := ws.ReadHeaderBuffer(&c.hr, c.rhdr[:])
	if err != nil {
		return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: %w", ErrProtocol, err))
	}

	state := ws.StateClientSide
	if c.fragmented {
		state = state.Set(ws.StateFragmented)
	}
	err = ws.CheckHeader(h, state)
	if err != nil {
		return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: %w", ErrProtocol, err))
	}

	switch h.OpCode {
	case ws.OpText:
		return c.fail(ws.StatusUnsupportedData, ErrTextFrame)
	case ws.OpBinary, ws.OpContinuation:
		if c.maxFrame >= 0 && h.Length > c.maxFrame {
			return c.fail(ws.StatusMessageTooBig, fmt.Errorf(
				"%w: payload of %d bytes, limit %d",
				ErrFrameTooLarge, h.Length, c.maxFrame))
		}
		_, _ = c.br.Discard(hn) // peeked, cannot fail
		c.remaining = h.Length
		c.fragmented = !h.Fin
		return nil
	}

	// A control frame; CheckHeader saw to Length <= 125 and FIN.
	total := hn + int(h.Length)
	b, err = c.br.Peek(total)
	if err != nil {
		return c.peekError(err)
	}
	payload := c.ctrl[:copy(c.ctrl[:], b[hn:])]
	_, _ = c.br.Discard(total)

	switch h.OpCode {
	case ws.OpPing:
		// RFC 6455 section 5.5.2: answer with a pong of the same payload,
		// also between the fragments of a message.
		c.wmu.Lock()
		err = c.writeFrame(ws.OpPong, payload)
		c.wmu.Unlock()
		if err != nil {
			// The write side is broken for good; so is the stream.
			c.rerr = fmt.Errorf("netx: websocket: answering ping: %w", err)
			return c.rerr
		}
		return nil
	case ws.OpPong:
		return nil
	default: // ws.OpClose
		return c.closeReceived(payload)
	}
}

// peekError maps a failed Peek: the socket ending between messages is
// io.EOF, inside a frame or a fragmented message io.ErrUnexpectedEOF.
func (c *wsConn) peekError(err error) error {
	if err == io.EOF && (c.br.Buffered() > 0 || c.fragmented) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// closeReceived handles the server's close frame (RFC 6455 section 5.5.1):
// it answers with a close frame echoing the status code and ends the stream.
func (c *wsConn) closeReceived(payload []byte) error {
	code := ws.StatusNoStatusRcvd
	var reason string
	switch len(payload) {
	case 0:
	case 1:
		return c.fail(ws.StatusProtocolError, fmt.Errorf(
			"%w: close frame payload of 1 byte", ErrProtocol))
	default:
		code, reason = ws.ParseCloseFrameData(payload)
		err := ws.CheckCloseFrameData(code, reason)
		if err != nil {
			return c.fail(ws.StatusProtocolError, fmt.Errorf(
				"%w: close frame: %w", ErrProtocol, err))
		}
	}
	c.wmu.Lock()
	err := c.sendClose(code)
	c.wmu.Unlock()
	c.rerr = &CloseError{Code: uint16(code), Reason: reason}
	if err != nil {
		// The stream has ended either way; keep the close as the cause.
		c.rerr = fmt.Errorf("%w (answering it failed: %w)", c.rerr, err)
	}
	return c.rerr
}

// fail ends the connection after the server broke the protocol: it sends a
// close frame with code and closes the socket. It returns err, which Read
// then keeps returning.
func (c *wsConn) fail(code ws.StatusCode, err error) error {
	c.rerr = err
	_ = c.shutdown(code)
	return err
}

// Write implements net.Conn; see WebSocket for its behaviour.
func (c *wsConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.writeFrame(ws.OpBinary, p)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeFrame sends p as one masked frame with FIN set. c.wmu must be held.
// p is not modified: the payload is masked into the write buffer, in chunks
// when it does not fit. Any error is sticky.
func (c *wsConn) writeFrame(op ws.OpCode, p []byte) error {
	if c.werr != nil {
		return c.werr
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], uint32(c.rng.Uint64()))
	h := ws.Header{
		Fin:    true,
		OpCode: op,
		Masked: true,
		Mask:   mask,
		Length: int64(len(p)),
	}
	// The buffer is empty between frames, so the header always fits.
	err := ws.WriteHeaderBuffer(c.bw, h, c.whdr[:])
	if err != nil {
		return c.writeError(err)
	}
	for off := 0; off < len(p); {
		buf := c.bw.AvailableBuffer()
		if cap(buf) == 0 {
			err = c.bw.Flush()
			if err != nil {
				return c.writeError(err)
			}
			continue
		}
		n := min(cap(buf), len(p)-off)
		buf = append(buf, p[off:off+n]...)
		ws.Cipher(buf, mask, off)
		_, err = c.bw.Write(buf) // fits: only advances the buffer
		if err != nil {
			return c.writeError(err)
		}
		off += n
	}
	err = c.bw.Flush()
	if err != nil {
		return c.writeError(err)
	}
	return nil
}

func (c *wsConn) writeError(err error) error {
	c.werr = err
	return err
}

// sendClose sends a close frame with code, once; code 1005 (no status
// received) sends an empty payload, as that code must not be sent (RFC 6455
// section 7.4.1). Later Writes fail. c.wmu must be held.
func (c *wsConn) sendClose(code ws.StatusCode) error {
	if c.closeSent {
		return nil
	}
	c.closeSent = true
	var payload []byte
	if code != ws.StatusNoStatusRcvd {
		binary.BigEndian.PutUint16(c.wctrl[:], uint16(code))
		payload = c.wctrl[:]
	}
	err := c.writeFrame(ws.OpClose, payload)
	if c.werr == nil {
		c.werr = errCloseSent
	}
	return err
}

// shutdown sends a close frame with code, unless one was sent, waiting at
// most closeTimeout, then closes the socket. Only the first call acts; every
// call returns the first one's result.
func (c *wsConn) shutdown(code ws.StatusCode) error {
	c.closeOnce.Do(func() {
		// The deadline also ends a Write blocked on a stalled peer, which
		// holds wmu.
		_ = c.conn.SetWriteDeadline(time.Now().Add(closeTimeout))
		c.wmu.Lock()
		_ = c.sendClose(code)
		c.werr = errWriteClosed
		c.wmu.Unlock()
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// Close implements net.Conn; see WebSocket for its behaviour.
func (c *wsConn) Close() error { return c.shutdown(ws.StatusNormalClosure) }

// LocalAddr returns the socket's local address.
func (c *wsConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the socket's remote address.
func (c *wsConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the socket's read and write deadlines.
func (c *wsConn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
