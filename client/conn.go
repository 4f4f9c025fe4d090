package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// maxPending is the number of encoded bytes that may wait for the writer
// before QoS 0 senders wait for it.
const maxPending = 256 << 10

// keepBuffer is the largest write buffer kept for reuse after a write, in
// bytes; a larger one, left by a large message, is let go.
const keepBuffer = 256 << 10

// aLongTimeAgo is a deadline in the past, set to unblock I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one network connection of a client: its CONNECT/CONNACK
// handshake, a reader goroutine that owns the decoder and hands packets to
// the core, and a writer goroutine that owns every write, PINGREQ
// included.
type conn struct {
	core           *core
	nc             net.Conn
	dec            *packet.Decoder // owned by the reader after the handshake
	log            *slog.Logger
	epoch          time.Time // monotonic base of the nanotime stamps below
	keepAlive      time.Duration
	pingTimeout    time.Duration
	sessionPresent bool

	wmu      sync.Mutex    // guards the fields below; taken after core.mu, never before
	wbuf     []byte        // encoded packets waiting for the writer
	wflushed chan struct{} // closed after the writer's next write; nil if nobody waits
	wclosing bool          // DISCONNECT is queued: nothing more is accepted [MQTT-3.14.4-2]
	wdead    bool          // the connection has ended
	writing  bool          // a write is under way, by the writer goroutine or a sender
	spare    []byte        // the other buffer, for the next swap
	deadline int64         // nanotime of the write deadline set on the connection; 0 if none; owned by whoever is writing
	wake     chan struct{} // capacity 1: wakes the writer
	lastSent atomic.Int64  // nanotime of the last write
	lastRecv atomic.Int64  // nanotime of the last packet read
	pingSent atomic.Int64  // nanotime of the unanswered PINGREQ; 0 if none

	closing   chan struct{} // closed when the connection ends
	done      chan struct{} // closed when the reader and the writer have exited
	onDone    func()        // if not nil, run by the last of them, before done is closed
	left      atomic.Int32  // of the reader and the writer, still running
	closeOnce sync.Once
	err       error // why it ended; set before closing is closed
}

// countingReader counts the bytes read from the network.
type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n.Add(uint64(n))
	return n, err
}

// dialConn opens a connection through d and runs the handshake within ctx
// and ConnectTimeout. On error nothing is left open.
func dialConn(ctx context.Context, c *core, d netx.Dialer, connect *packet.Connect) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	nc, err := d.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("mqtt: connect: dial: %w", err)
	}
	cn := &conn{
		core:        c,
		nc:          nc,
		dec:         packet.NewDecoder(countingReader{nc, &c.stats.bytesReceived}, c.opts.MaxPacketSize),
		log:         c.log,
		epoch:       time.Now(),
		pingTimeout: c.opts.PingTimeout,
		wake:        make(chan struct{}, 1),
		closing:     make(chan struct{}),
		done:        make(chan struct{}),
	}
	if c.opts.KeepAlive > 0 {
		cn.keepAlive = time.Duration(connect.KeepAlive) * time.Second
	}
	if err := cn.handshake(ctx, connect); err != nil {
		nc.Close()
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
	cn.count(len(buf))
	cn.lastSent.Store(cn.nanotime())
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
	cn.core.stats.packetsReceived.Add(1)
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
	if err := cn.nc.SetDeadline(time.Time{}); err != nil {
		return fail("clearing deadline", err)
	}
	return nil
}

// start runs the reader and the writer.
func (cn *conn) start() {
	cn.left.Store(2)
	go cn.readLoop()
	go cn.writeLoop()
}

func (cn *conn) nanotime() int64 { return int64(time.Since(cn.epoch)) }

// count records one packet of n bytes sent.
func (cn *conn) count(n int) {
	cn.core.stats.packetsSent.Add(1)
	cn.core.stats.bytesSent.Add(uint64(n))
}

// exit marks the reader or the writer as finished.
func (cn *conn) exit() {
	if cn.left.Add(-1) == 0 {
		if cn.onDone != nil {
			cn.onDone()
		}
		close(cn.done)
	}
}

// shutdown ends the connection once, for cause, and tells the core.
func (cn *conn) shutdown(cause error) {
	cn.closeOnce.Do(func() {
		cn.wmu.Lock()
		cn.wdead = true
		flushed := cn.wflushed
		cn.wflushed = nil
		cn.wmu.Unlock()
		cn.err = cause
		close(cn.closing)
		cn.nc.Close()
		if flushed != nil {
			close(flushed)
		}
		cn.core.detach(cn, cause)
		if cause != ErrClosed {
			cn.log.Warn("mqtt connection lost", slog.Any("error", cause))
		} else {
			cn.log.Debug("mqtt connection closed")
		}
	})
}

// disconnect queues DISCONNECT after everything queued; the writer closes
// the connection once it is written. It reports false when the connection
// was already closing.
func (cn *conn) disconnect() bool {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.wclosing || cn.wdead {
		return false
	}
	cn.wclosing = true
	d := packet.Disconnect{}
	cn.wbuf, _ = d.AppendTo(cn.wbuf)
	cn.count(2)
	cn.logPacket("sent", &d)
	signal(cn.wake)
	return true
}

// reserve locks wmu once the write buffer has room, or returns an error with
// wmu unlocked: one wrapping ErrNotSent (and ErrClosed, or ctx.Err()).
func (cn *conn) reserve(ctx context.Context) error {
	cn.wmu.Lock()
	for {
		if cn.wdead || cn.wclosing {
			cn.wmu.Unlock()
			return errClosedNotSent
		}
		if len(cn.wbuf) < maxPending {
			return nil
		}
		if cn.wflushed == nil {
			cn.wflushed = make(chan struct{})
		}
		flushed := cn.wflushed
		cn.wmu.Unlock()
		select {
		case <-flushed:
		case <-cn.closing:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the writer: %w", ErrNotSent, ctx.Err())
		}
		cn.wmu.Lock()
	}
}

// send queues p for the writer, waiting for room.
func (cn *conn) send(ctx context.Context, p packet.Packet) error {
	if err := cn.reserve(ctx); err != nil {
		return err
	}
	n := len(cn.wbuf)
	var err error
	cn.wbuf, err = p.AppendTo(cn.wbuf)
	if err == nil {
		cn.count(len(cn.wbuf) - n)
		if cn.debug() {
			cn.logPacket("sent", p)
		}
	}
	if err != nil {
		cn.wmu.Unlock()
		return fmt.Errorf("mqtt: %v: %w", p.Type(), err)
	}
	cn.flushLocked()
	return nil
}

// sendPublish is send for a QoS 0 PUBLISH, with static calls so that p does
// not escape and a QoS 0 Publish allocates nothing.
func (cn *conn) sendPublish(ctx context.Context, p *packet.Publish) error {
	if err := cn.reserve(ctx); err != nil {
		return err
	}
	n := len(cn.wbuf)
	var err error
	cn.wbuf, err = p.AppendTo(cn.wbuf)
	if err == nil {
		cn.count(len(cn.wbuf) - n)
		if cn.debug() {
			cp := *p
			cn.logPacket("sent", &cp)
		}
	}
	cn.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("mqtt: publish %s: %w", quote(p.Topic), err)
	}
	// A QoS 0 message waits for no answer: the writer goroutine takes it,
	// together with whatever else was queued meanwhile.
	signal(cn.wake)
	return nil
}

// appendPublish queues a QoS 1 or 2 PUBLISH without waiting: the in-flight
// window bounds what it adds. It does not wake the writer: the caller
// flushes or wakes it. It reports false when the connection is closing.
// core.mu is held.
func (cn *conn) appendPublish(p *packet.Publish) bool {
	cn.wmu.Lock()
	if cn.wdead || cn.wclosing {
		cn.wmu.Unlock()
		return false
	}
	n := len(cn.wbuf)
	cn.wbuf, _ = p.AppendTo(cn.wbuf) // checked at acceptance
	cn.count(len(cn.wbuf) - n)
	if cn.debug() {
		cp := *p
		cn.logPacket("sent", &cp)
	}
	cn.wmu.Unlock()
	return true
}

// sendAck queues a PUBACK, PUBREC, PUBREL or PUBCOMP. Acknowledgements are
// never held back by the pending-bytes bound, so the reader and the
// dispatcher never wait for the writer. It sends nothing, and reports
// false, once DISCONNECT is queued [MQTT-3.14.4-2] or the connection has
// ended.
func (cn *conn) sendAck(t packet.Type, id uint16) bool {
	cn.wmu.Lock()
	if cn.wdead || cn.wclosing {
		cn.wmu.Unlock()
		return false
	}
	switch t {
	case packet.PUBACK:
		a := packet.Puback{PacketID: id}
		cn.wbuf, _ = a.AppendTo(cn.wbuf)
	case packet.PUBREC:
		a := packet.Pubrec{PacketID: id}
		cn.wbuf, _ = a.AppendTo(cn.wbuf)
	case packet.PUBREL:
		a := packet.Pubrel{PacketID: id}
		cn.wbuf, _ = a.AppendTo(cn.wbuf)
	default:
		a := packet.Pubcomp{PacketID: id}
		cn.wbuf, _ = a.AppendTo(cn.wbuf)
	}
	cn.count(4)
	if cn.debug() {
		cn.logPacket("sent", newAck(t, id))
	}
	cn.wmu.Unlock()
	signal(cn.wake)
	return true
}

// newAck returns a new acknowledgement packet of type t, for the log.
func newAck(t packet.Type, id uint16) packet.Packet {
	switch t {
	case packet.PUBACK:
		return &packet.Puback{PacketID: id}
	case packet.PUBREC:
		return &packet.Pubrec{PacketID: id}
	case packet.PUBREL:
		return &packet.Pubrel{PacketID: id}
	default:
		return &packet.Pubcomp{PacketID: id}
	}
}

// writeLoop is the writer goroutine. Writes are serialised by the writing
// flag: whoever sets it swaps the queued bytes out and writes them. A
// sender whose packet finds no write under way writes it itself (see
// flush), so a lone request goes out at once, without waking another
// goroutine; packets queued while a write is under way go out together in
// the next one, which the writer makes when woken. There is no timer. The
// writer also runs keep alive.
//
// With keep alive on, a write that stays blocked for longer than the keep
// alive interval plus PingTimeout fails on its deadline: a link that
// accepts no bytes for that long is as dead as one that answers no PINGREQ.
func (cn *conn) writeLoop() {
	defer cn.exit()
	timer := time.NewTimer(cn.keepAliveDelay())
	defer timer.Stop()
	for {
		select {
		case <-cn.wake:
		case <-timer.C:
		case <-cn.closing:
			return
		}
		if err := cn.checkKeepAlive(); err != nil {
			cn.shutdown(err)
			return
		}
		cn.wmu.Lock()
		if !cn.flushLocked() {
			return
		}
		timer.Reset(cn.keepAliveDelay())
	}
}

// flush writes what is queued on the calling goroutine, unless a write is
// under way (whose writer sees the new bytes and wakes the writer
// goroutine for them).
func (cn *conn) flush() {
	cn.wmu.Lock()
	cn.flushLocked()
}

// flushLocked is flush with wmu held; it unlocks it. It reports false when
// the connection has ended.
func (cn *conn) flushLocked() bool {
	if cn.writing || cn.wdead || len(cn.wbuf) == 0 && !cn.wclosing && cn.wflushed == nil {
		dead := cn.wdead
		cn.wmu.Unlock()
		return !dead
	}
	cn.writing = true
	out := cn.wbuf
	cn.wbuf, cn.spare = cn.spare[:0], nil
	flushed := cn.wflushed
	cn.wflushed = nil
	closing := cn.wclosing
	cn.wmu.Unlock()

	var err error
	if len(out) > 0 {
		if cn.keepAlive > 0 {
			// Move the deadline only when half of its margin is used, to
			// spare a system call per write.
			now := cn.nanotime()
			if limit := int64(cn.keepAlive + cn.pingTimeout); cn.deadline-now < limit/2 {
				cn.deadline = now + limit
				cn.nc.SetWriteDeadline(cn.epoch.Add(time.Duration(cn.deadline)))
			}
		}
		_, err = cn.nc.Write(out)
		cn.lastSent.Store(cn.nanotime())
	}

	cn.wmu.Lock()
	cn.writing = false
	if cap(out) <= keepBuffer {
		cn.spare = out[:0]
	}
	more := len(cn.wbuf) > 0 || cn.wflushed != nil
	cn.wmu.Unlock()
	if flushed != nil {
		close(flushed)
	}
	switch {
	case err != nil:
		cn.shutdown(fmt.Errorf("mqtt: connection lost: write: %w", err))
		return false
	case closing:
		// DISCONNECT was in out: close the connection and send nothing
		// more [MQTT-3.14.4-1], [MQTT-3.14.4-2].
		cn.shutdown(ErrClosed)
		return false
	case more:
		signal(cn.wake)
	}
	return true
}

// checkKeepAlive queues a PINGREQ when nothing was sent, or nothing
// received, for the keep alive interval [MQTT-3.1.2-23], and fails with
// ErrPingTimeout when a PINGREQ has gone unanswered for PingTimeout. While a
// PINGREQ is unanswered the reader reads on whatever the inbox holds, so
// the PINGRESP is never stuck behind unhandled messages.
func (cn *conn) checkKeepAlive() error {
	if cn.keepAlive <= 0 {
		return nil
	}
	now := cn.nanotime()
	if sent := cn.pingSent.Load(); sent != 0 {
		if now-sent >= int64(cn.pingTimeout) {
			return ErrPingTimeout
		}
		return nil
	}
	if now-cn.lastSent.Load() >= int64(cn.keepAlive) || now-cn.lastRecv.Load() >= int64(cn.keepAlive) {
		cn.wmu.Lock()
		if !cn.wclosing && !cn.wdead {
			p := packet.Pingreq{}
			cn.wbuf, _ = p.AppendTo(cn.wbuf)
			cn.count(2)
			cn.pingSent.Store(now)
			if cn.debug() {
				cn.logPacket("sent", &packet.Pingreq{})
			}
		}
		cn.wmu.Unlock()
		signal(cn.core.inbox.room)
	}
	return nil
}

// keepAliveDelay returns how long the writer may sleep before the next keep
// alive check.
func (cn *conn) keepAliveDelay() time.Duration {
	if cn.keepAlive <= 0 {
		return time.Duration(1<<63 - 1)
	}
	now := cn.nanotime()
	if sent := cn.pingSent.Load(); sent != 0 {
		return max(time.Duration(sent+int64(cn.pingTimeout)-now), time.Millisecond)
	}
	last := min(cn.lastSent.Load(), cn.lastRecv.Load())
	return max(time.Duration(last+int64(cn.keepAlive)-now), time.Millisecond)
}

// readLoop owns the decoder: it reads packets until the connection ends.
func (cn *conn) readLoop() {
	defer cn.exit()
	for {
		p, err := cn.dec.Next()
		if err != nil {
			cn.wmu.Lock()
			closing := cn.wclosing
			cn.wmu.Unlock()
			switch {
			case closing:
				// Disconnect is under way: the server closing its end
				// after DISCONNECT is the expected end, not a loss.
				err = ErrClosed
			case !errors.Is(err, packet.ErrMalformed) && !errors.Is(err, packet.ErrPacketTooLarge):
				err = fmt.Errorf("mqtt: connection lost: read: %w", err)
			}
			cn.shutdown(err)
			return
		}
		cn.core.stats.packetsReceived.Add(1)
		cn.lastRecv.Store(cn.nanotime())
		if cn.debug() {
			cn.logPacket("received", p)
		}
		if err := cn.core.handle(cn, p); err != nil {
			cn.shutdown(err)
			return
		}
	}
}
