package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// aLongTimeAgo is a deadline in the past, set to unblock I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one network connection of a client. Its reader goroutine owns
// the decoder and the read deadline, on which it also runs keep alive; the
// write side (writer.go) has a single writer at a time. An idle connection
// runs the reader alone, blocked in a read into a few bytes of its own:
// the decoder and its buffer come from a pool when bytes arrive and go back
// when none are left.
type conn struct {
	c  *core
	nc net.Conn

	lastSent atomic.Int64 // nanotime of the last write
	lastRecv atomic.Int64 // nanotime of the last packet read
	pingSent atomic.Int64 // nanotime of the unanswered PINGREQ; noPing if none

	dec *packet.Decoder // the reader's

	// Guarded by wmu: the write side (see writer.go) and the connection's
	// life.
	wbuf    *[]byte   // encoded packets waiting for the network; nil when none
	room    broadcast // room in the write buffer; the writer goroutine's end
	ended   broadcast // the connection's end (closed), the reader's (done)
	writeFn func()
	err     error // why the connection ended; set when state becomes connClosed
	wmu     sync.Mutex

	wdeadline      int32   // the write deadline set, in whole seconds of nanotime; owned by whoever writes
	first          [4]byte // what an idle read takes (the reader's): a PUBACK, PUBCOMP or PINGRESP whole
	pfx, pfxEnd    uint8   // first[pfx:pfxEnd] is not yet given to the decoder
	state          connState
	writing        bool // a write is under way
	writer         bool // the writer goroutine runs
	wantRoom       bool // the outbox's window stopped for lack of room
	done           bool // the reader and the writer have exited
	sessionPresent bool
}

// noPing is pingSent when no PINGREQ is unanswered.
const noPing = math.MinInt64

// epoch is the base of the connections' nanotime stamps: a monotonic
// reading (or, inside a testing/synctest bubble, the bubble's clock), so
// that a stamp costs eight bytes.
var epoch = time.Now()

// dialConn opens a connection through d and runs the handshake within ctx
// and ConnectTimeout, in cn (a new conn when nil). On error nothing is left
// open.
func dialConn(ctx context.Context, c *core, d Dialer, connect *packet.Connect, timeout time.Duration, cn *conn) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := d.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("mqtt: connect: dial: %w", err)
	}
	if cn == nil {
		cn = new(conn)
	}
	cn.c, cn.nc = c, nc
	cn.pingSent.Store(noPing)
	cn.writeFn = cn.writeLoop
	if err := cn.handshake(ctx, connect); err != nil {
		nc.Close()
		cn.releaseDecoder()
		return nil, err
	}
	return cn, nil
}

// handshake sends CONNECT and reads CONNACK [MQTT-3.1.0-1], [MQTT-3.2.0-1].
func (cn *conn) handshake(ctx context.Context, connect *packet.Connect) error {
	// Unblock the I/O below when ctx ends.
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(aLongTimeAgo) })
	fail := func(stage string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("mqtt: connect: %s: %w", stage, context.Cause(ctx))
		}
		return fmt.Errorf("mqtt: connect: %s: %w", stage, err)
	}
	buf, err := connect.AppendTo(nil)
	if err != nil {
		stop()
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	cn.logPacket("sent", connect)
	if _, err := cn.nc.Write(buf); err != nil {
		stop()
		return fail("sending CONNECT", err)
	}
	cn.countSent(len(buf))
	cn.lastSent.Store(cn.nanotime())
	cn.dec = getDecoder((*connReader)(cn), int(cn.c.cfg.maxPacket))
	p, err := cn.dec.Next()
	if !stop() {
		// ctx ended: the deadline is set, whatever Next returned.
		return fail("waiting for CONNACK", context.Cause(ctx))
	}
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// [MQTT-3.2.2-6]: the server may close without CONNACK.
		return fail("waiting for CONNACK", fmt.Errorf("server closed the connection: %w", err))
	case errors.Is(err, packet.ErrMalformed) || errors.Is(err, packet.ErrPacketTooLarge):
		return fail("waiting for CONNACK", fmt.Errorf("the server's answer is not MQTT 3.1.1: %w", err))
	case err != nil:
		return fail("waiting for CONNACK", err)
	}
	cn.c.stats.packetsReceived.Add(1)
	cn.lastRecv.Store(cn.nanotime())
	cn.logPacket("received", p)
	ack, ok := p.(*packet.Connack)
	if !ok {
		return violation("first packet from the server is %v, not CONNACK [MQTT-3.2.0-1]", p.Type())
	}
	if ack.ReturnCode != packet.Accepted {
		return &ConnackError{Code: ack.ReturnCode}
	}
	if connect.CleanSession && ack.SessionPresent {
		return violation("session present in answer to a clean session [MQTT-3.2.2-1]")
	}
	cn.sessionPresent = ack.SessionPresent
	cn.releaseIdleDecoder()
	return nil
}

// start runs the reader.
func (cn *conn) start() { go cn.readLoop() }

func (cn *conn) nanotime() int64 { return int64(time.Since(epoch)) }

// at returns the time of nanotime stamp t.
func at(t int64) time.Time { return epoch.Add(time.Duration(t)) }

// countSent records one packet of n bytes sent.
func (cn *conn) countSent(n int) {
	cn.c.stats.packetsSent.Add(1)
	cn.c.stats.bytesSent.Add(uint64(n))
}

// connReader is the stream the decoder reads: first the bytes an idle read
// took, then the network connection, counted.
type connReader conn

func (r *connReader) Read(p []byte) (int, error) {
	if r.pfx < r.pfxEnd {
		n := copy(p, r.first[r.pfx:r.pfxEnd])
		r.pfx += uint8(n)
		return n, nil
	}
	n, err := r.nc.Read(p)
	r.c.stats.bytesReceived.Add(uint64(n))
	return n, err
}

// decoders holds the decoders of idle connections.
var decoders = sync.Pool{New: func() any { return packet.NewDecoder(nil, 0) }}

func getDecoder(r io.Reader, maxSize int) *packet.Decoder {
	d := decoders.Get().(*packet.Decoder)
	d.Reset(r)
	d.SetMaxSize(maxSize)
	return d
}

// releaseIdleDecoder gives the decoder back to the pool when it holds no
// bytes of a packet to come.
func (cn *conn) releaseIdleDecoder() {
	if cn.dec != nil && cn.dec.Buffered() == 0 && cn.pfx == cn.pfxEnd {
		cn.releaseDecoder()
	}
}

func (cn *conn) releaseDecoder() {
	if cn.dec != nil {
		cn.dec.Reset(nil)
		decoders.Put(cn.dec)
		cn.dec = nil
	}
}

// next reads the next packet. Without a decoder (idle) it waits for bytes
// in a read of its own few bytes, then takes a decoder for them.
func (cn *conn) next() (packet.Packet, error) {
	if cn.dec == nil {
		n, err := cn.nc.Read(cn.first[:])
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return nil, err
		}
		// An error that came with bytes comes again with the next read.
		cn.c.stats.bytesReceived.Add(uint64(n))
		cn.pfx, cn.pfxEnd = 0, uint8(n)
		cn.dec = getDecoder((*connReader)(cn), int(cn.c.cfg.maxPacket))
	}
	return cn.dec.Next()
}

// readLoop is the reader goroutine: it reads packets and hands them to the
// core until the connection ends, and runs keep alive.
func (cn *conn) readLoop() {
	defer cn.readerExit()
	cn.armKeepAlive()
	for {
		p, err := cn.next()
		if err != nil {
			if isTimeout(err) && !cn.closing() {
				if err := cn.keepAliveDue(); err != nil {
					cn.shutdown(err)
					return
				}
				continue
			}
			switch {
			case cn.closing():
				// Disconnect is under way: the server closing its end
				// after DISCONNECT is the expected end, not a loss.
				err = ErrClosed
			case !errors.Is(err, packet.ErrMalformed) && !errors.Is(err, packet.ErrPacketTooLarge):
				err = fmt.Errorf("mqtt: connection lost: read: %w", err)
			}
			cn.shutdown(err)
			return
		}
		cn.c.stats.packetsReceived.Add(1)
		cn.lastRecv.Store(cn.nanotime())
		cn.logPacket("received", p)
		if err := cn.c.handle(cn, p); err != nil {
			cn.shutdown(err)
			return
		}
		cn.releaseIdleDecoder()
	}
}

// readerExit ends the reader, after shutdown: it waits for the writer,
// gives the buffers back, tells the core of the end (detached: the only
// place that does), tells the owner and marks the connection done.
func (cn *conn) readerExit() {
	cn.releaseDecoder()
	cn.wmu.Lock()
	for cn.writer {
		wake := cn.room.waitLocked()
		cn.wmu.Unlock()
		<-wake
		cn.wmu.Lock()
	}
	if cn.wbuf != nil {
		putBuffer(cn.wbuf)
		cn.wbuf = nil
	}
	cause := cn.err
	cn.wmu.Unlock()
	cn.c.detached(cn, cause)
	if cause != ErrClosed {
		cn.c.cfg.log.Warn("mqtt connection lost", slog.Any("error", cause))
	} else {
		cn.c.cfg.log.Debug("mqtt connection closed")
	}
	cn.c.connDone(cn)
	cn.wmu.Lock()
	cn.done = true
	cn.ended.notifyLocked()
	cn.wmu.Unlock()
}

// waitDone waits until the connection is done (its reader and writer have
// exited) and reports true, or until stop is closed and reports false; a
// nil stop waits for done alone.
func (cn *conn) waitDone(stop <-chan struct{}) bool {
	for {
		cn.wmu.Lock()
		if cn.done {
			cn.wmu.Unlock()
			return true
		}
		wake := cn.ended.waitLocked() // also at the connection's end, before done
		cn.wmu.Unlock()
		select {
		case <-wake:
		case <-stop:
			return false
		}
	}
}

// waitClosed returns a channel that is closed once the connection has
// ended (or, spuriously, when it is done).
func (cn *conn) waitClosed() <-chan struct{} {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.state == connClosed {
		return closedChan
	}
	return cn.ended.waitLocked()
}

// error returns why the connection ended, or nil while it is up.
func (cn *conn) error() error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	return cn.err
}

// isClosed reports whether the connection has ended.
func (cn *conn) isClosed() bool {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	return cn.state == connClosed
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// shutdown ends the connection once, for cause, and tells the core.
func (cn *conn) shutdown(cause error) {
	cn.wmu.Lock()
	if cn.state == connClosed {
		cn.wmu.Unlock()
		return
	}
	cn.state = connClosed
	cn.err = cause
	cn.room.notifyLocked()
	cn.ended.notifyLocked()
	cn.wmu.Unlock()
	// The reader, which this wakes, tells the core (readerExit), whatever
	// goroutine ends the connection: a caller whose write failed must not
	// be applying the end's effects after the client's Done.
	cn.nc.Close()
}

// closing reports whether DISCONNECT is queued or the connection has
// ended.
func (cn *conn) closing() bool {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	return cn.state != connUp
}

// keepAliveDue runs when the read deadline passes: it queues a PINGREQ when
// nothing was sent, or nothing received, for the keep alive interval
// [MQTT-3.1.2-23], fails with ErrPingTimeout when a PINGREQ has gone
// unanswered for PingTimeout [MQTT-3.1.2-24 is the server's side], and
// moves the deadline to the next check.
func (cn *conn) keepAliveDue() error {
	now := cn.nanotime()
	ka := int64(cn.c.cfg.keepAlive())
	if sent := cn.pingSent.Load(); sent != noPing {
		if now-sent >= int64(cn.c.cfg.pingTimeout()) {
			return ErrPingTimeout
		}
	} else if now-cn.lastSent.Load() >= ka || now-cn.lastRecv.Load() >= ka {
		cn.sendPing(now)
	}
	cn.armKeepAlive()
	return nil
}

// armKeepAlive sets the read deadline to the next keep alive check. An
// early deadline costs one check; the deadline is only moved when it
// passes, so reading costs nothing for keep alive.
func (cn *conn) armKeepAlive() {
	ka := cn.c.cfg.keepAlive()
	if ka <= 0 {
		return
	}
	var next int64
	if sent := cn.pingSent.Load(); sent != noPing {
		next = sent + int64(cn.c.cfg.pingTimeout())
	} else {
		next = min(cn.lastSent.Load(), cn.lastRecv.Load()) + int64(ka)
	}
	cn.nc.SetReadDeadline(at(next))
}

// lastPing returns when the client last sent a packet or queued a
// PINGREQ (which the writer may not have been able to write).
func (cn *conn) lastPing() int64 { return max(cn.lastSent.Load(), cn.pingSent.Load()) }

// holdBack waits, on the reader goroutine, until wake is closed or the
// connection ends: the reader stops reading while the inbox or the write
// buffer is full. Keep alive goes on sending PINGREQ after every interval
// without a packet sent, but the wait for PINGRESP is suspended, since
// nothing is read meanwhile; it starts again when reading does.
func (cn *conn) holdBack(wake <-chan struct{}) error {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
		if cn.pingSent.Load() != noPing {
			cn.pingSent.Store(cn.nanotime())
		}
		cn.armKeepAlive()
	}()
	ka := cn.c.cfg.keepAlive()
	closed := cn.waitClosed()
	for {
		var tick <-chan time.Time
		if ka > 0 {
			// Every keep alive interval of silence, a PINGREQ, answered or
			// not: the server must hear from the client [MQTT-3.1.2-23].
			d := time.Duration(cn.lastPing() + int64(ka) - cn.nanotime())
			if t == nil {
				t = time.NewTimer(d)
			} else {
				t.Reset(d)
			}
			tick = t.C
		}
		select {
		case <-wake:
			return nil
		case <-closed:
			if cn.isClosed() {
				return errClosedNotSent
			}
			closed = cn.waitClosed()
		case <-tick:
			if now := cn.nanotime(); now-cn.lastPing() >= int64(ka) {
				cn.sendPing(now)
			}
		}
	}
}
