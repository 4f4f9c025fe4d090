package client

import (
	"context"
	"fmt"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// maxPending is the number of encoded bytes that may wait for the writer
// before senders wait for it.
const maxPending = 256 << 10

// keepBuffer is the largest write buffer kept for reuse after a write, in
// bytes; a larger one, left by a large message, is let go.
const keepBuffer = 256 << 10

// reserve locks wmu once the write buffer has room, or returns an error with
// wmu unlocked: ErrClosed (wrapped with ErrNotSent), or one wrapping ErrNotSent
// and ctx.Err().
func (c *Client) reserve(ctx context.Context) error {
	c.wmu.Lock()
	for {
		if c.wdead || c.wclosing {
			c.wmu.Unlock()
			return errClosedNotSent
		}
		if len(c.wbuf) < maxPending {
			return nil
		}
		if c.wflushed == nil {
			c.wflushed = make(chan struct{})
		}
		flushed := c.wflushed
		c.wmu.Unlock()
		select {
		case <-flushed:
		case <-c.closing:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the writer: %w", ErrNotSent, ctx.Err())
		}
		c.wmu.Lock()
	}
}

// send queues p for the writer.
func (c *Client) send(ctx context.Context, p packet.Packet) error {
	if err := c.reserve(ctx); err != nil {
		return err
	}
	var err error
	c.wbuf, err = p.AppendTo(c.wbuf)
	if err == nil && c.debug() {
		c.logPacket("sent", p)
	}
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("mqtt: %v: %w", p.Type(), err)
	}
	signal(c.wake)
	return nil
}

// sendPublish is send for a PUBLISH, with static calls so that p does not
// escape and a QoS 0 Publish allocates nothing.
func (c *Client) sendPublish(ctx context.Context, p *packet.Publish) error {
	if err := c.reserve(ctx); err != nil {
		return err
	}
	var err error
	c.wbuf, err = p.AppendTo(c.wbuf)
	if err == nil && c.debug() {
		cp := *p
		c.logPacket("sent", &cp)
	}
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("mqtt: publish %s: %w", quote(p.Topic), err)
	}
	signal(c.wake)
	return nil
}

// sendAck queues a PUBACK, PUBREC, PUBREL or PUBCOMP. Acknowledgements are
// never held back by the pending-bytes bound, so the reader and the
// dispatcher never wait for the writer. It sends nothing once DISCONNECT is
// queued [MQTT-3.14.4-2] or the connection has ended.
func (c *Client) sendAck(t packet.Type, id uint16) {
	c.wmu.Lock()
	if c.wdead || c.wclosing {
		c.wmu.Unlock()
		return
	}
	switch t {
	case packet.PUBACK:
		a := packet.Puback{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	case packet.PUBREC:
		a := packet.Pubrec{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	case packet.PUBREL:
		a := packet.Pubrel{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	default:
		a := packet.Pubcomp{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	}
	if c.debug() {
		c.logPacket("sent", newAck(t, id))
	}
	c.wmu.Unlock()
	signal(c.wake)
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

// writeLoop owns every write to the network connection. It writes what
// senders queued whenever it is woken, so a lone packet goes out at once and
// packets queued while a write is under way go out together in the next one,
// with no timer. It also runs keep alive.
//
// With keep alive on, a write that stays blocked for longer than the keep
// alive interval plus PingTimeout fails on its deadline: a link that
// accepts no bytes for that long is as dead as one that answers no PINGREQ.
func (c *Client) writeLoop() {
	defer c.exit(true)
	var out []byte
	var deadline int64 // nanotime of the write deadline set on the connection; 0 if none
	timer := time.NewTimer(c.keepAliveDelay())
	defer timer.Stop()
	for {
		select {
		case <-c.wake:
		case <-timer.C:
		case <-c.closing:
			return
		}
		if err := c.checkKeepAlive(); err != nil {
			c.shutdown(err)
			return
		}
		c.wmu.Lock()
		out, c.wbuf = c.wbuf, out[:0]
		flushed := c.wflushed
		c.wflushed = nil
		closing := c.wclosing
		c.wmu.Unlock()
		if len(out) > 0 {
			if c.keepAlive > 0 {
				// Move the deadline only when half of its margin is used, to
				// spare a system call per write.
				now := c.nanotime()
				if limit := int64(c.keepAlive + c.opts.PingTimeout); deadline-now < limit/2 {
					deadline = now + limit
					c.conn.SetWriteDeadline(c.epoch.Add(time.Duration(deadline)))
				}
			}
			if _, err := c.conn.Write(out); err != nil {
				c.shutdown(fmt.Errorf("mqtt: connection lost: write: %w", err))
				return
			}
			c.lastSent.Store(c.nanotime())
			if cap(out) > keepBuffer {
				out = nil
			}
		}
		if flushed != nil {
			close(flushed)
		}
		if closing {
			// DISCONNECT was in out: close the connection and send nothing
			// more [MQTT-3.14.4-1], [MQTT-3.14.4-2].
			c.shutdown(ErrClosed)
			return
		}
		timer.Reset(c.keepAliveDelay())
	}
}

// checkKeepAlive queues a PINGREQ when nothing was sent, or nothing
// received, for the keep alive interval [MQTT-3.1.2-23], and fails with
// ErrPingTimeout when a PINGREQ has gone unanswered for PingTimeout. While a
// PINGREQ is unanswered the reader reads on whatever the inbox holds, so
// the PINGRESP is never stuck behind unhandled messages. It runs on the
// writer goroutine.
func (c *Client) checkKeepAlive() error {
	if c.keepAlive <= 0 {
		return nil
	}
	now := c.nanotime()
	if sent := c.pingSent.Load(); sent != 0 {
		if now-sent >= int64(c.opts.PingTimeout) {
			return ErrPingTimeout
		}
		return nil
	}
	if now-c.lastSent.Load() >= int64(c.keepAlive) || now-c.lastRecv.Load() >= int64(c.keepAlive) {
		c.wmu.Lock()
		if !c.wclosing && !c.wdead {
			p := packet.Pingreq{}
			c.wbuf, _ = p.AppendTo(c.wbuf)
			c.pingSent.Store(now)
			if c.debug() {
				c.logPacket("sent", &packet.Pingreq{})
			}
		}
		c.wmu.Unlock()
		signal(c.inbox.room)
	}
	return nil
}

// keepAliveDelay returns how long the writer may sleep before the next keep
// alive check.
func (c *Client) keepAliveDelay() time.Duration {
	if c.keepAlive <= 0 {
		return time.Duration(1<<63 - 1)
	}
	now := c.nanotime()
	if sent := c.pingSent.Load(); sent != 0 {
		return max(time.Duration(sent+int64(c.opts.PingTimeout)-now), time.Millisecond)
	}
	last := min(c.lastSent.Load(), c.lastRecv.Load())
	return max(time.Duration(last+int64(c.keepAlive)-now), time.Millisecond)
}
