package packet

import (
	"encoding/binary"
	"slices"
)

// PUBLISH fixed-header flag bits (spec 3.3.1).
const (
	flagRetain   = 0x01
	flagDUP      = 0x08
	shiftQoS     = 1
	maskPubFlags = 0x0f
)

// Publish is the PUBLISH packet, an application message in either direction
// (spec 3.3).
//
// After decoding, Topic and Payload alias the input. AppendTo does not retain
// them.
type Publish struct {
	// DUP marks a re-delivery of a PUBLISH sent before [MQTT-3.3.1-1]; it is
	// always false at QoS 0 [MQTT-3.3.1-2].
	DUP bool
	// QoS is the delivery guarantee: 0, 1 or 2 [MQTT-3.3.1-4].
	QoS byte
	// Retain asks the server to keep the message for future subscribers
	// (spec 3.3.1.3); on messages from the server it marks a retained one
	// sent because of a new subscription [MQTT-3.3.1-8].
	Retain bool
	// Topic is the topic name: at least one character, no wildcards
	// [MQTT-3.3.2-2], UTF-8 [MQTT-3.3.2-1].
	Topic []byte
	// PacketID identifies a QoS 1 or 2 message, non-zero [MQTT-2.3.1-1]. A
	// QoS 0 PUBLISH has no packet identifier on the wire [MQTT-2.3.1-5];
	// PacketID must then be 0.
	PacketID uint16
	// Payload is the application message, 0 or more bytes (spec 3.3.3).
	Payload []byte
}

// Type returns PUBLISH.
func (*Publish) Type() Type { return PUBLISH }

func (p *Publish) remaining() int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	return n
}

// Size returns the length of the packet's wire form in bytes.
func (p *Publish) Size() int { n := p.remaining(); return headerSize(n) + n }

func (p *Publish) check() violation {
	if p.QoS > 2 {
		return violation{"MQTT-3.3.1-4", "QoS 3"}
	}
	if p.QoS == 0 {
		if p.DUP {
			return violation{"MQTT-3.3.1-2", "DUP set at QoS 0"}
		}
		if p.PacketID != 0 {
			return violation{"MQTT-2.3.1-5", "packet identifier at QoS 0"}
		}
	} else if p.PacketID == 0 {
		return checkPacketID(0)
	}
	if n := len(p.Topic); n > 0 && n <= maxString && plain(p.Topic, true) {
		return violation{}
	}
	return checkTopicName(p.Topic, "topic name")
}

// plainValid is the common case of check, cheap enough to run on every
// packet: QoS 1 or 2 with an identifier, or QoS 0 without DUP or one, and a
// topic name of 8 to 65,535 plain ASCII bytes without wildcards. When it
// reports false, check finds out whether and why the packet is invalid.
func (p *Publish) plainValid() bool {
	ok := p.QoS-1 < 2 && p.PacketID != 0 || p.QoS == 0 && !p.DUP && p.PacketID == 0
	n := len(p.Topic)
	return ok && n >= 8 && n <= maxString && plainTopicWords(p.Topic)
}

func (p *Publish) first() byte {
	b := byte(PUBLISH)<<4 | p.QoS<<shiftQoS
	if p.DUP {
		b |= flagDUP
	}
	if p.Retain {
		b |= flagRetain
	}
	return b
}

// AppendTo appends the PUBLISH's wire form to dst. It refuses, with an *Error
// wrapping ErrInvalid, QoS 3 [MQTT-3.3.1-4], DUP at QoS 0 [MQTT-3.3.1-2], a
// packet identifier of 0 at QoS 1 or 2 [MQTT-2.3.1-1] or one at QoS 0
// [MQTT-2.3.1-5], an empty topic name [MQTT-4.7.3-1], a wildcard in it
// [MQTT-3.3.2-2] or ill-formed UTF-8 [MQTT-1.5.3-1], and a Remaining Length
// over MaxRemainingLength (spec 2.2.3) with one wrapping ErrPacketTooLarge.
func (p *Publish) AppendTo(dst []byte) ([]byte, error) {
	if !p.plainValid() {
		if v := p.check(); v.broken() {
			return dst, v.asError(PUBLISH, ErrInvalid)
		}
	}
	n := p.remaining()
	if n > MaxRemainingLength {
		return dst, &Error{Type: PUBLISH, Rule: "2.2.3", Reason: "remaining length over 268435455", Err: ErrPacketTooLarge}
	}
	total := headerSize(n) + n
	l := len(dst)
	if cap(dst)-l < total {
		dst = slices.Grow(dst, total)
	}
	b := dst[l : l+total]
	b[0] = p.first()
	i := 1 + putVarint(b[1:], n)
	binary.BigEndian.PutUint16(b[i:], uint16(len(p.Topic)))
	i += 2 + copy(b[i+2:], p.Topic)
	if p.QoS > 0 {
		binary.BigEndian.PutUint16(b[i:], p.PacketID)
		i += 2
	}
	copy(b[i:], p.Payload)
	return dst[:l+total], nil
}

func (p *Publish) decode(flags byte, body []byte) error {
	p.DUP = flags&flagDUP != 0
	p.QoS = flags >> shiftQoS & 0x3
	p.Retain = flags&flagRetain != 0
	if len(body) < 2 {
		return malformed(PUBLISH, "3.3.2", "variable header cut short")
	}
	end := 2 + int(binary.BigEndian.Uint16(body))
	if p.QoS > 0 {
		// A QoS 0 PUBLISH has no packet identifier [MQTT-2.3.1-5].
		end += 2
	}
	if len(body) < end {
		return malformed(PUBLISH, "3.3.2", "variable header cut short")
	}
	p.PacketID = 0
	if p.QoS > 0 {
		p.Topic = body[2 : end-2 : end-2]
		p.PacketID = binary.BigEndian.Uint16(body[end-2:])
	} else {
		p.Topic = body[2:end:end]
	}
	p.Payload = body[end:]
	if !p.plainValid() {
		if v := p.check(); v.broken() {
			return v.asError(PUBLISH, ErrMalformed)
		}
	}
	return nil
}

// Clone returns a deep copy of p whose byte fields do not alias p's. It
// makes one allocation for the bytes.
func (p *Publish) Clone() *Publish {
	c := *p
	buf := make([]byte, 0, len(p.Topic)+len(p.Payload))
	c.Topic, buf = cloneInto(buf, p.Topic)
	c.Payload, _ = cloneInto(buf, p.Payload)
	return &c
}

// cloneInto appends s to buf and returns the copy and the extended buffer.
// A nil s stays nil.
func cloneInto(buf, s []byte) ([]byte, []byte) {
	if s == nil {
		return nil, buf
	}
	start := len(buf)
	buf = append(buf, s...)
	return buf[start:len(buf):len(buf)], buf
}
