package packet

import "encoding/binary"

// Unsubscribe is the UNSUBSCRIBE packet (spec 3.10). Its fixed header flags
// are 0010 [MQTT-3.10.1-1].
type Unsubscribe struct {
	PacketID uint16 // non-zero [MQTT-2.3.1-1]
	// Filters holds at least one topic filter [MQTT-3.10.3-2]. After
	// decoding the filters alias the input; the slice's capacity is reused,
	// so a warm value allocates nothing.
	Filters [][]byte
}

// Type returns UNSUBSCRIBE.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

func (p *Unsubscribe) remaining() int {
	n := 2
	for _, f := range p.Filters {
		n += 2 + len(f)
	}
	return n
}

// Size returns the length of the packet's wire form in bytes.
func (p *Unsubscribe) Size() int { n := p.remaining(); return headerSize(n) + n }

func (p *Unsubscribe) check() violation {
	if v := checkPacketID(p.PacketID); v.broken() {
		return v
	}
	if len(p.Filters) == 0 {
		return violation{"MQTT-3.10.3-2", "no topic filter"}
	}
	for _, f := range p.Filters {
		if v := checkTopicFilter(f); v.broken() {
			return v
		}
	}
	return violation{}
}

// AppendTo appends the UNSUBSCRIBE's wire form, first byte 0xA2
// [MQTT-3.10.1-1], to dst. It refuses, with an *Error wrapping ErrInvalid, a
// packet identifier of 0 [MQTT-2.3.1-1], an empty list [MQTT-3.10.3-2] and an
// invalid topic filter (spec 4.7); and a Remaining Length over
// MaxRemainingLength with one wrapping ErrPacketTooLarge.
func (p *Unsubscribe) AppendTo(dst []byte) ([]byte, error) {
	if v := p.check(); v.broken() {
		return dst, v.asError(UNSUBSCRIBE, ErrInvalid)
	}
	n := p.remaining()
	if n > MaxRemainingLength {
		return dst, &Error{Type: UNSUBSCRIBE, Rule: "2.2.3", Reason: "remaining length over 268435455", Err: ErrPacketTooLarge}
	}
	dst = appendHeader(dst, byte(UNSUBSCRIBE)<<4|0x2, n)
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	for _, f := range p.Filters {
		dst = appendString(dst, f)
	}
	return dst, nil
}

func (p *Unsubscribe) decode(_ byte, body []byte) error {
	r := reader{b: body, ok: true}
	p.PacketID = r.uint16()
	if !r.ok {
		return malformed(UNSUBSCRIBE, "3.10.2", "variable header cut short")
	}
	p.Filters = p.Filters[:0]
	for len(r.b) > 0 {
		f := r.field()
		if !r.ok {
			return malformed(UNSUBSCRIBE, "3.10.3", "payload cut short")
		}
		p.Filters = append(p.Filters, f)
	}
	if v := p.check(); v.broken() {
		return v.asError(UNSUBSCRIBE, ErrMalformed)
	}
	return nil
}

// Clone returns a deep copy of p whose filters do not alias p's.
func (p *Unsubscribe) Clone() *Unsubscribe {
	c := &Unsubscribe{PacketID: p.PacketID}
	if p.Filters == nil {
		return c
	}
	n := 0
	for _, f := range p.Filters {
		n += len(f)
	}
	buf := make([]byte, 0, n)
	c.Filters = make([][]byte, len(p.Filters))
	for i, f := range p.Filters {
		c.Filters[i], buf = cloneInto(buf, f)
	}
	return c
}
