package client

import (
	"errors"
	"fmt"
	"log/slog"
	"unsafe"

	"github.com/devicemq/mqtt/packet"
)

// readLoop owns the decoder: it reads packets until the connection ends.
func (c *Client) readLoop() {
	defer c.exit(true)
	defer c.inbox.end()
	for {
		p, err := c.dec.Next()
		if err != nil {
			c.wmu.Lock()
			closing := c.wclosing
			c.wmu.Unlock()
			switch {
			case closing:
				// Disconnect is under way: the server closing its end
				// after DISCONNECT is the expected end, not a loss.
				err = ErrClosed
			case !errors.Is(err, packet.ErrMalformed) && !errors.Is(err, packet.ErrPacketTooLarge):
				err = fmt.Errorf("mqtt: connection lost: read: %w", err)
			}
			c.shutdown(err)
			return
		}
		c.lastRecv.Store(c.nanotime())
		if c.debug() {
			c.logPacket("received", p)
		}
		if err := c.handle(p); err != nil {
			c.shutdown(err)
			return
		}
	}
}

// handle processes one packet on the reader goroutine.
func (c *Client) handle(p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		c.receivePublish(p)
		return nil
	case *packet.Puback:
		return c.acknowledge(p.PacketID, packet.PUBACK)
	case *packet.Pubrec:
		return c.pubrec(p.PacketID)
	case *packet.Pubcomp:
		return c.acknowledge(p.PacketID, packet.PUBCOMP)
	case *packet.Pubrel:
		// Release a received QoS 2 message: its identifier is new again
		// after PUBCOMP [MQTT-4.3.3-2].
		c.mu.Lock()
		delete(c.qos2In, p.PacketID)
		c.mu.Unlock()
		c.sendAck(packet.PUBCOMP, p.PacketID)
		return nil
	case *packet.Suback:
		return c.suback(p)
	case *packet.Unsuback:
		return c.acknowledge(p.PacketID, packet.UNSUBACK)
	case *packet.Pingresp:
		c.pingSent.Store(0)
		return nil
	case *packet.Connack:
		return violation("CONNACK after the first packet (spec 3.2)")
	default:
		return violation("%v from the server; only clients send it (spec 2.2.1)", p.Type())
	}
}

// acknowledge completes the request with identifier id on a PUBACK, PUBCOMP
// or UNSUBACK.
func (c *Client) acknowledge(id uint16, got packet.Type) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.inflight[id]
	if r == nil {
		if !c.dead {
			c.log.Warn("mqtt acknowledgement for a packet identifier not in flight", slog.String("packet", got.String()), slog.Int("id", int(id)))
		}
		return nil
	}
	if want := r.awaits(); want != got {
		return violation("%v for packet identifier %d, which awaits %v", got, id, want)
	}
	if r.kind == packet.UNSUBSCRIBE {
		c.removeRoutesLocked(r.filters)
	}
	c.completeLocked(r, nil)
	return nil
}

// awaits returns the packet type that completes r.
func (r *request) awaits() packet.Type {
	switch {
	case r.kind == packet.SUBSCRIBE:
		return packet.SUBACK
	case r.kind == packet.UNSUBSCRIBE:
		return packet.UNSUBACK
	case r.qos == 1:
		return packet.PUBACK
	case r.released:
		return packet.PUBCOMP
	default:
		return packet.PUBREC
	}
}

// pubrec answers a PUBREC with PUBREL [MQTT-4.3.3-1]; the message is then
// waiting for PUBCOMP.
func (c *Client) pubrec(id uint16) error {
	c.mu.Lock()
	r := c.inflight[id]
	if r != nil {
		if r.kind != packet.PUBLISH || r.qos != 2 {
			c.mu.Unlock()
			return violation("PUBREC for packet identifier %d, which awaits %v", id, r.awaits())
		}
		r.released = true
	}
	c.mu.Unlock()
	// PUBREL also for an unknown identifier, so the server can finish
	// its side of the exchange.
	c.sendAck(packet.PUBREL, id)
	return nil
}

func (c *Client) suback(p *packet.Suback) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.inflight[p.PacketID]
	if r == nil {
		if !c.dead {
			c.log.Warn("mqtt SUBACK for a packet identifier not in flight", slog.Int("id", int(p.PacketID)))
		}
		return nil
	}
	if r.kind != packet.SUBSCRIBE {
		return violation("SUBACK for packet identifier %d, which awaits %v", p.PacketID, r.awaits())
	}
	if len(p.ReturnCodes) != len(r.subs) {
		return violation("SUBACK with %d return codes for %d topic filters [MQTT-3.9.3-1]", len(p.ReturnCodes), len(r.subs))
	}
	r.codes = append([]packet.SubackCode(nil), p.ReturnCodes...)
	for i, s := range r.subs {
		if !r.codes[i].Failed() {
			c.addRouteLocked(s)
		}
	}
	c.completeLocked(r, nil)
	return nil
}

func (c *Client) addRouteLocked(s Subscription) {
	for i := range c.routes {
		if c.routes[i].filter == s.Filter {
			// A new SUBSCRIBE of the same filter replaces the old one
			// [MQTT-3.8.4-3].
			c.routes[i] = newRoute(s)
			return
		}
	}
	c.routes = append(c.routes, newRoute(s))
}

func (c *Client) removeRoutesLocked(filters []string) {
	kept := c.routes[:0]
	for _, r := range c.routes {
		removed := false
		for _, f := range filters {
			removed = removed || r.filter == f
		}
		if !removed {
			kept = append(kept, r)
		}
	}
	clear(c.routes[len(kept):])
	c.routes = kept
}

// receivePublish hands a received PUBLISH to the dispatcher, which delivers
// it and then acknowledges it by its QoS [MQTT-3.3.4-1]. When the inbox is
// full it waits for room, unless a request of the client awaits an
// acknowledgement (see inbox).
func (c *Client) receivePublish(p *packet.Publish) {
	in := inbound{deliver: true}
	switch p.QoS {
	case 1:
		in.ack, in.id = packet.PUBACK, p.PacketID
	case 2:
		in.ack, in.id = packet.PUBREC, p.PacketID
		c.mu.Lock()
		if _, dup := c.qos2In[p.PacketID]; dup {
			// Received before and not yet released: acknowledge again,
			// never deliver twice [MQTT-4.3.3-2].
			in.deliver = false
		} else {
			c.qos2In[p.PacketID] = struct{}{}
		}
		c.mu.Unlock()
	}
	if in.deliver {
		in.msg = copyMessage(p)
	}
	for c.inbox.full() && !c.awaiting() {
		select {
		case <-c.inbox.room:
		case <-c.closing:
			return
		}
	}
	c.inbox.put(in)
}

// awaiting reports whether a request of the client, PINGREQ included, waits
// for an acknowledgement.
func (c *Client) awaiting() bool {
	if c.pingSent.Load() != 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight) > 0
}

// copyMessage copies a received PUBLISH out of the decoder's buffer with one
// allocation for topic and payload.
func copyMessage(p *packet.Publish) Message {
	buf := make([]byte, len(p.Topic)+len(p.Payload))
	n := copy(buf, p.Topic)
	copy(buf[n:], p.Payload)
	var topic string
	if n > 0 {
		// buf[:n] is never written again, so the string may share it.
		topic = unsafe.String(&buf[0], n)
	}
	return Message{
		Topic:     topic,
		Payload:   buf[n:len(buf):len(buf)],
		QoS:       p.QoS,
		Retain:    p.Retain,
		Duplicate: p.DUP,
	}
}
