package packet

import "encoding/binary"

// Subscription is one topic filter and requested QoS pair of a SUBSCRIBE
// (spec 3.8.3).
type Subscription struct {
	// Filter is the topic filter (spec 4.7). It aliases the input after
	// decoding.
	Filter []byte
	// QoS is the maximum QoS the client asks for: 0, 1 or 2 [MQTT-3-8.3-4].
	QoS byte
}

// Subscribe is the SUBSCRIBE packet (spec 3.8). Its fixed header flags are
// 0010 [MQTT-3.8.1-1].
type Subscribe struct {
	PacketID uint16 // non-zero [MQTT-2.3.1-1]
	// Subscriptions holds at least one filter/QoS pair [MQTT-3.8.3-3]. When
	// decoding, the slice's capacity is reused, so a warm value allocates
	// nothing.
	Subscriptions []Subscription
}

// Type returns SUBSCRIBE.
func (*Subscribe) Type() Type { return SUBSCRIBE }

func (p *Subscribe) remaining() int {
	n := 2
	for _, s := range p.Subscriptions {
		n += 2 + len(s.Filter) + 1
	}
	return n
}

// Size returns the length of the packet's wire form in bytes.
func (p *Subscribe) Size() int { n := p.remaining(); return headerSize(n) + n }

func (p *Subscribe) check() violation {
	if v := checkPacketID(p.PacketID); v.broken() {
		return v
	}
	if len(p.Subscriptions) == 0 {
		return violation{"MQTT-3.8.3-3", "no topic filter"}
	}
	for _, s := range p.Subscriptions {
		if v := checkTopicFilter(s.Filter); v.broken() {
			return v
		}
		if v := checkQoS(s.QoS, "MQTT-3-8.3-4", "requested QoS"); v.broken() {
			return v
		}
	}
	return violation{}
}

// AppendTo appends the SUBSCRIBE's wire form, first byte 0x82
// [MQTT-3.8.1-1], to dst. It refuses, with an *Error wrapping ErrInvalid, a
// packet identifier of 0 [MQTT-2.3.1-1], an empty list [MQTT-3.8.3-3], an
// invalid topic filter (spec 4.7) and a requested QoS over 2
// [MQTT-3-8.3-4]; and a Remaining Length over MaxRemainingLength with one
// wrapping ErrPacketTooLarge.
func (p *Subscribe) AppendTo(dst []byte) ([]byte, error) {
	if v := p.check(); v.broken() {
		return dst, v.asError(SUBSCRIBE, ErrInvalid)
	}
	n := p.remaining()
	if n > MaxRemainingLength {
		return dst, &Error{Type: SUBSCRIBE, Rule: "2.2.3", Reason: "remaining length over 268435455", Err: ErrPacketTooLarge}
	}
	dst = appendHeader(dst, byte(SUBSCRIBE)<<4|0x2, n)
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	for _, s := range p.Subscriptions {
		dst = appendString(dst, s.Filter)
		dst = append(dst, s.QoS)
	}
	return dst, nil
}

func (p *Subscribe) decode(_ byte, body []byte) error {
	r := reader{b: body, ok: true}
	p.PacketID = r.uint16()
	if !r.ok {
		return malformed(SUBSCRIBE, "3.8.2", "variable header cut short")
	}
	p.Subscriptions = p.Subscriptions[:0]
	for len(r.b) > 0 {
		f := r.field()
		q := r.byte()
		if !r.ok {
			return malformed(SUBSCRIBE, "3.8.3", "payload cut short")
		}
		if q&0xfc != 0 {
			return malformed(SUBSCRIBE, "MQTT-3-8.3-4", "reserved bits of requested QoS are set")
		}
		p.Subscriptions = append(p.Subscriptions, Subscription{Filter: f, QoS: q})
	}
	if v := p.check(); v.broken() {
		return v.asError(SUBSCRIBE, ErrMalformed)
	}
	return nil
}

// Clone returns a deep copy of p whose filters do not alias p's.
func (p *Subscribe) Clone() *Subscribe {
	c := &Subscribe{PacketID: p.PacketID}
	if p.Subscriptions == nil {
		return c
	}
	n := 0
	for _, s := range p.Subscriptions {
		n += len(s.Filter)
	}
	buf := make([]byte, 0, n)
	c.Subscriptions = make([]Subscription, len(p.Subscriptions))
	for i, s := range p.Subscriptions {
		c.Subscriptions[i].QoS = s.QoS
		c.Subscriptions[i].Filter, buf = cloneInto(buf, s.Filter)
	}
	return c
}
