package client

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/devicemq/mqtt/packet"
)

// The write side of a conn. Packets are encoded into one buffer, which
// whoever writes next swaps out and writes with one call: a sender whose
// packet finds no write under way writes it on its own goroutine (flush),
// so a lone request goes out at once; packets queued meanwhile go out
// together with the next write, which a writer goroutine makes. That
// goroutine runs only while there is something to write. There is no
// timer.
//
// The buffer is bounded by Options.WriteBufferSize: beyond it, senders
// wait (Publish within its context; the reader by holding back reading, so
// a server that stops reading meets back-pressure; the dispatcher for its
// acknowledgements), and the outbox's window stops until the buffer
// drains. A buffer is taken whole by a write, so there are at most two:
// the one being written and the one being filled, each at most
// WriteBufferSize plus one packet. PINGREQ and DISCONNECT, two bytes each
// and one at a time, are always taken.

// appendResult tells what became of a packet offered without waiting.
type appendResult uint8

const (
	appended appendResult = iota
	noRoom                // the write buffer is full: the outbox is told when it drains
	notUp                 // DISCONNECT is queued or the connection has ended
)

// keepBuffer is the largest write buffer kept in the pool, in bytes.
const keepBuffer = 256 << 10

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func putBuffer(b *[]byte) {
	if cap(*b) <= keepBuffer {
		*b = (*b)[:0]
		buffers.Put(b)
	}
}

// queuedLocked returns the bytes waiting for the network.
func (cn *conn) queuedLocked() int {
	if cn.wbuf == nil {
		return 0
	}
	return len(*cn.wbuf)
}

// bufLocked returns the buffer to append to.
func (cn *conn) bufLocked() *[]byte {
	if cn.wbuf == nil {
		cn.wbuf = buffers.Get().(*[]byte)
	}
	return cn.wbuf
}

// lockRoom locks wmu once the write buffer has room, or returns, with wmu
// unlocked, an error wrapping ErrNotSent (and ErrClosed, or ctx.Err()).
func (cn *conn) lockRoom(ctx context.Context) error {
	cn.wmu.Lock()
	for {
		if cn.state != connUp {
			cn.wmu.Unlock()
			return cn.endedErr()
		}
		if cn.queuedLocked() < int(cn.c.cfg.writeBuffer) {
			return nil
		}
		wake := cn.room.waitLocked()
		cn.wmu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the writer: %w", ErrNotSent, ctx.Err())
		}
		cn.wmu.Lock()
	}
}

// endedErr is the error of a call that found the connection ending: a
// Client ends with it (ErrClosed); a Session has another (ErrNotConnected).
func (cn *conn) endedErr() error {
	if cn.c.out.endsWithConn() {
		return errClosedNotSent
	}
	return errConnEnded
}

// send queues p, waiting for room, and writes it on this goroutine unless
// a write is under way.
func (cn *conn) send(ctx context.Context, p packet.Packet) error {
	return cn.sendThen(ctx, p, nil)
}

// sendThen is send, calling queued (when not nil) with the write lock held
// once p is in the write buffer and before any of it can be written. On
// error queued has not been called.
func (cn *conn) sendThen(ctx context.Context, p packet.Packet, queued func()) error {
	if err := cn.lockRoom(ctx); err != nil {
		return err
	}
	b := cn.bufLocked()
	n := len(*b)
	var err error
	*b, err = p.AppendTo(*b)
	if err != nil {
		*b = (*b)[:n]
		cn.wmu.Unlock()
		return fmt.Errorf("mqtt: %v: %w", p.Type(), err)
	}
	if queued != nil {
		queued()
	}
	cn.countSent(len(*b) - n)
	cn.logPacket("sent", p)
	cn.flushLocked()
	return nil
}

// sendPublish0 is send for a QoS 0 PUBLISH, which waits for no answer: the
// writer goroutine takes it, with whatever else is queued meanwhile. It
// makes only static calls, so that p does not escape and a QoS 0 Publish
// allocates nothing.
func (cn *conn) sendPublish0(ctx context.Context, p *packet.Publish) error {
	if err := cn.lockRoom(ctx); err != nil {
		return err
	}
	b := cn.bufLocked()
	n := len(*b)
	var err error
	*b, err = p.AppendTo(*b)
	if err != nil {
		cn.wmu.Unlock()
		return fmt.Errorf("mqtt: publish %s: %w", quote(p.Topic), err)
	}
	cn.countSent(len(*b) - n)
	if cn.debug() {
		cp := *p
		cn.logPacket("sent", &cp)
	}
	cn.kickLocked()
	cn.wmu.Unlock()
	return nil
}

// tryAppendPublish queues a QoS 1 or 2 PUBLISH of the outbox's window
// without waiting; the outbox's lock is held. It does not write: the
// caller flushes or kicks.
func (cn *conn) tryAppendPublish(p *packet.Publish) appendResult {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.state != connUp {
		return notUp
	}
	if cn.queuedLocked() >= int(cn.c.cfg.writeBuffer) {
		cn.wantRoom = true
		return noRoom
	}
	b := cn.bufLocked()
	n := len(*b)
	*b, _ = p.AppendTo(*b) // checked at acceptance
	cn.countSent(len(*b) - n)
	if cn.debug() {
		cp := *p
		cn.logPacket("sent", &cp)
	}
	return appended
}

// tryAppendAck is tryAppendPublish for a PUBREL of the window.
func (cn *conn) tryAppendAck(t packet.Type, id uint16) appendResult {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.state != connUp {
		return notUp
	}
	if cn.queuedLocked() >= int(cn.c.cfg.writeBuffer) {
		cn.wantRoom = true
		return noRoom
	}
	cn.appendAckLocked(t, id)
	return appended
}

func (cn *conn) appendAckLocked(t packet.Type, id uint16) {
	b := cn.bufLocked()
	*b = append(*b, byte(t)<<4|ackFlags(t), 2, byte(id>>8), byte(id))
	cn.countSent(4)
	if cn.debug() {
		cn.logPacket("sent", newAck(t, id))
	}
}

// ackFlags returns the fixed header flags of an acknowledgement: 0010 for
// PUBREL [MQTT-3.6.1-1], 0000 for the others.
func ackFlags(t packet.Type) byte {
	if t == packet.PUBREL {
		return 2
	}
	return 0
}

// sendAck queues a PUBACK, PUBREC, PUBREL or PUBCOMP owed to the server,
// waiting for room in the write buffer: on the reader goroutine (reader
// true) by holding back reading, keep alive going on; on the dispatcher by
// waiting. It reports false, sending nothing, once DISCONNECT is queued
// [MQTT-3.14.4-2] or the connection has ended: the server sends the message
// again on a persistent session.
func (cn *conn) sendAck(t packet.Type, id uint16, reader bool) bool {
	cn.wmu.Lock()
	for {
		if cn.state != connUp {
			cn.wmu.Unlock()
			return false
		}
		if cn.queuedLocked() < int(cn.c.cfg.writeBuffer) {
			break
		}
		wake := cn.room.waitLocked()
		cn.wmu.Unlock()
		if reader {
			if cn.holdBack(wake) != nil {
				return false
			}
		} else {
			<-wake // notified at the connection's end too
		}
		cn.wmu.Lock()
	}
	cn.appendAckLocked(t, id)
	cn.kickLocked()
	cn.wmu.Unlock()
	return true
}

// sendPing queues a PINGREQ, whatever the write buffer holds, unless
// DISCONNECT is queued, and records when.
func (cn *conn) sendPing(now int64) {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.state != connUp {
		return
	}
	b := cn.bufLocked()
	*b = append(*b, byte(packet.PINGREQ)<<4, 0)
	cn.countSent(2)
	cn.pingSent.Store(now)
	if cn.debug() {
		cn.logPacket("sent", &packet.Pingreq{})
	}
	cn.kickLocked()
}

// disconnect queues DISCONNECT after everything queued; the connection is
// closed once it is written [MQTT-3.14.4-1]. It reports false when the
// connection was already closing.
func (cn *conn) disconnect() bool {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.state != connUp {
		return false
	}
	cn.state = connClosing
	b := cn.bufLocked()
	*b = append(*b, byte(packet.DISCONNECT)<<4, 0)
	cn.countSent(2)
	cn.logPacket("sent", &packet.Disconnect{})
	cn.room.notifyLocked() // waiters for room give up: nothing follows DISCONNECT
	cn.kickLocked()
	return true
}

// kickLocked makes sure what is queued gets written: by the write under
// way, which looks again when it ends, or by the writer goroutine.
func (cn *conn) kickLocked() {
	if cn.writing || cn.writer || cn.wbuf == nil || cn.state == connClosed {
		return
	}
	cn.writer = true
	go cn.writeFn()
}

// write gets what is queued written: on this goroutine when now is true
// (flush), else by the writer goroutine (kick). cn may be nil.
func (cn *conn) write(now bool) {
	switch {
	case cn == nil:
	case now:
		cn.flush()
	default:
		cn.kick()
	}
}

// kick is kickLocked for callers without wmu.
func (cn *conn) kick() {
	cn.wmu.Lock()
	cn.kickLocked()
	cn.wmu.Unlock()
}

// flush writes what is queued on the calling goroutine unless a write is
// under way, which then takes it.
func (cn *conn) flush() {
	cn.wmu.Lock()
	cn.flushLocked()
}

// flushLocked is flush with wmu held; it unlocks it.
func (cn *conn) flushLocked() {
	if cn.writing || cn.writer || cn.wbuf == nil || cn.state == connClosed {
		cn.wmu.Unlock()
		return
	}
	err, disconnected := cn.writeLocked()
	resume := cn.wantRoom && err == nil
	cn.wantRoom = false
	if err == nil && !disconnected && !resume {
		cn.kickLocked()
	}
	cn.wmu.Unlock()
	cn.afterWrite(err, disconnected, resume)
}

// writeLoop is the writer goroutine: it writes until nothing is queued, or
// another goroutine is writing (which then looks for more itself).
func (cn *conn) writeLoop() {
	// Let the goroutines that are ready to queue packets (publishers woken
	// by acknowledgements) do so first: one write takes them all.
	cn.wmu.Lock()
	for !cn.writing && cn.wbuf != nil && cn.state != connClosed {
		cn.wmu.Unlock()
		runtime.Gosched()
		cn.wmu.Lock()
		if cn.writing || cn.wbuf == nil || cn.state == connClosed {
			break
		}
		err, disconnected := cn.writeLocked()
		resume := cn.wantRoom && err == nil
		cn.wantRoom = false
		if err != nil || disconnected || resume {
			cn.wmu.Unlock()
			cn.afterWrite(err, disconnected, resume)
			cn.wmu.Lock()
		}
	}
	cn.writer = false
	cn.room.notifyLocked() // the reader may wait for the writer to end
	cn.wmu.Unlock()
}

// afterWrite ends the connection after a failed write or once DISCONNECT
// is written [MQTT-3.14.4-1], or lets the outbox's window go on once the
// buffer drained.
func (cn *conn) afterWrite(err error, disconnected, resume bool) {
	switch {
	case err != nil:
		cn.shutdown(fmt.Errorf("mqtt: connection lost: write: %w", err))
	case disconnected:
		cn.shutdown(ErrClosed)
	case resume:
		cn.c.resumeWindow(cn)
		cn.kick()
	}
}

// writeLocked takes the queued bytes and writes them, with wmu held on
// entry and on return but not during the write. It reports the write's
// error, and whether DISCONNECT was among the bytes (nothing can follow
// it).
//
// With keep alive on, a write that stays blocked for longer than the keep
// alive interval plus PingTimeout (up to 1.5 times that) fails on its
// deadline: a link that takes no bytes for that long is as dead as one
// that answers no PINGREQ.
func (cn *conn) writeLocked() (err error, disconnected bool) {
	out := cn.wbuf
	cn.wbuf = nil
	cn.writing = true
	closing := cn.state == connClosing
	cn.room.notifyLocked() // the buffer is empty again
	cn.wmu.Unlock()

	if out != nil && len(*out) > 0 {
		if ka := cn.c.cfg.keepAlive(); ka > 0 {
			// The deadline is set to 1.5 times the limit ahead and moved
			// only once less than the limit is left, to spare a call per
			// write: a write gets between the limit and 1.5 times it.
			now := cn.nanotime()
			if limit := int64(ka + cn.c.cfg.pingTimeout()); cn.wdeadline == 0 || int64(cn.wdeadline)*1e9-now < limit {
				d := floorDiv(now+limit+limit/2, 1e9) // whole seconds, rounded down: at most a second early
				cn.wdeadline = int32(d)
				cn.nc.SetWriteDeadline(at(d * 1e9))
			}
		}
		_, err = cn.nc.Write(*out)
		cn.lastSent.Store(cn.nanotime())
	}
	if out != nil {
		putBuffer(out)
	}

	cn.wmu.Lock()
	cn.writing = false
	return err, closing && err == nil
}

// floorDiv is a / b rounded towards minus infinity (nanotime stamps are
// negative inside a testing/synctest bubble).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
