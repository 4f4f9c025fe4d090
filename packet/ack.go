package packet

import "encoding/binary"

// The four-byte packets that carry only a packet identifier: PUBACK, PUBREC,
// PUBREL, PUBCOMP (spec 3.4 to 3.7) and UNSUBACK (spec 3.11).

// Puback is the PUBACK packet, the answer to a QoS 1 PUBLISH (spec 3.4).
type Puback struct {
	PacketID uint16 // identifier of the PUBLISH acknowledged [MQTT-2.3.1-6]
}

// Pubrec is the PUBREC packet, the first answer to a QoS 2 PUBLISH (spec 3.5).
type Pubrec struct {
	PacketID uint16 // identifier of the PUBLISH received [MQTT-2.3.1-6]
}

// Pubrel is the PUBREL packet, the answer to a PUBREC (spec 3.6). Its fixed
// header flags are 0010 [MQTT-3.6.1-1].
type Pubrel struct {
	PacketID uint16 // identifier of the PUBLISH released [MQTT-2.3.1-6]
}

// Pubcomp is the PUBCOMP packet, the answer to a PUBREL (spec 3.7).
type Pubcomp struct {
	PacketID uint16 // identifier of the PUBLISH completed [MQTT-2.3.1-6]
}

// Unsuback is the UNSUBACK packet, the answer to an UNSUBSCRIBE (spec 3.11).
type Unsuback struct {
	PacketID uint16 // identifier of the UNSUBSCRIBE acknowledged [MQTT-3.10.4-4]
}

// Type returns PUBACK.
func (*Puback) Type() Type { return PUBACK }

// Type returns PUBREC.
func (*Pubrec) Type() Type { return PUBREC }

// Type returns PUBREL.
func (*Pubrel) Type() Type { return PUBREL }

// Type returns PUBCOMP.
func (*Pubcomp) Type() Type { return PUBCOMP }

// Type returns UNSUBACK.
func (*Unsuback) Type() Type { return UNSUBACK }

// Size returns 4, the length of every PUBACK in bytes.
func (*Puback) Size() int { return 4 }

// Size returns 4, the length of every PUBREC in bytes.
func (*Pubrec) Size() int { return 4 }

// Size returns 4, the length of every PUBREL in bytes.
func (*Pubrel) Size() int { return 4 }

// Size returns 4, the length of every PUBCOMP in bytes.
func (*Pubcomp) Size() int { return 4 }

// Size returns 4, the length of every UNSUBACK in bytes.
func (*Unsuback) Size() int { return 4 }

// AppendTo appends the PUBACK's wire form to dst; a packet identifier of 0 is
// refused with an *Error wrapping ErrInvalid [MQTT-2.3.1-1].
func (p *Puback) AppendTo(dst []byte) ([]byte, error) { return appendID(dst, PUBACK, p.PacketID) }

// AppendTo appends the PUBREC's wire form to dst; a packet identifier of 0 is
// refused with an *Error wrapping ErrInvalid [MQTT-2.3.1-1].
func (p *Pubrec) AppendTo(dst []byte) ([]byte, error) { return appendID(dst, PUBREC, p.PacketID) }

// AppendTo appends the PUBREL's wire form, first byte 0x62 [MQTT-3.6.1-1],
// to dst; a packet identifier of 0 is refused with an *Error wrapping
// ErrInvalid [MQTT-2.3.1-1].
func (p *Pubrel) AppendTo(dst []byte) ([]byte, error) { return appendID(dst, PUBREL, p.PacketID) }

// AppendTo appends the PUBCOMP's wire form to dst; a packet identifier of 0
// is refused with an *Error wrapping ErrInvalid [MQTT-2.3.1-1].
func (p *Pubcomp) AppendTo(dst []byte) ([]byte, error) { return appendID(dst, PUBCOMP, p.PacketID) }

// AppendTo appends the UNSUBACK's wire form to dst; a packet identifier of 0
// is refused with an *Error wrapping ErrInvalid [MQTT-2.3.1-1].
func (p *Unsuback) AppendTo(dst []byte) ([]byte, error) { return appendID(dst, UNSUBACK, p.PacketID) }

func (p *Puback) decode(_ byte, body []byte) (err error) {
	p.PacketID, err = decodeID(PUBACK, body)
	return
}
func (p *Pubrec) decode(_ byte, body []byte) (err error) {
	p.PacketID, err = decodeID(PUBREC, body)
	return
}
func (p *Pubrel) decode(_ byte, body []byte) (err error) {
	p.PacketID, err = decodeID(PUBREL, body)
	return
}
func (p *Pubcomp) decode(_ byte, body []byte) (err error) {
	p.PacketID, err = decodeID(PUBCOMP, body)
	return
}
func (p *Unsuback) decode(_ byte, body []byte) (err error) {
	p.PacketID, err = decodeID(UNSUBACK, body)
	return
}

func appendID(dst []byte, t Type, id uint16) ([]byte, error) {
	if v := checkPacketID(id); v.broken() {
		return dst, v.asError(t, ErrInvalid)
	}
	flags, _ := t.flags()
	dst = append(dst, byte(t)<<4|flags, 2)
	return binary.BigEndian.AppendUint16(dst, id), nil
}

func decodeID(t Type, body []byte) (uint16, error) {
	if len(body) != 2 {
		return 0, malformed(t, headerSection[t], "remaining length is not 2")
	}
	id := binary.BigEndian.Uint16(body)
	if v := checkPacketID(id); v.broken() {
		return 0, v.asError(t, ErrMalformed)
	}
	return id, nil
}
