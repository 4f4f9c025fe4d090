package packet

import "encoding/binary"

// SubackCode is one return code of a SUBACK: the QoS granted for a topic
// filter, or SubackFailure (spec 3.9.3).
type SubackCode byte

// SUBACK return codes [MQTT-3.9.3-2]. All other values are reserved.
const (
	GrantedQoS0   SubackCode = 0x00 // success, maximum QoS 0
	GrantedQoS1   SubackCode = 0x01 // success, maximum QoS 1
	GrantedQoS2   SubackCode = 0x02 // success, maximum QoS 2
	SubackFailure SubackCode = 0x80 // the subscription was refused
)

// Failed reports whether c is SubackFailure.
func (c SubackCode) Failed() bool { return c == SubackFailure }

// Suback is the SUBACK packet, the answer to a SUBSCRIBE (spec 3.9).
type Suback struct {
	PacketID uint16 // identifier of the SUBSCRIBE answered [MQTT-3.8.4-2]
	// ReturnCodes holds one code per topic filter of the SUBSCRIBE, in the
	// same order [MQTT-3.9.3-1]. It aliases the input after decoding.
	ReturnCodes []SubackCode
}

// Type returns SUBACK.
func (*Suback) Type() Type { return SUBACK }

// Size returns the length of the packet's wire form in bytes.
func (p *Suback) Size() int { n := 2 + len(p.ReturnCodes); return headerSize(n) + n }

func (p *Suback) check() violation {
	if v := checkPacketID(p.PacketID); v.broken() {
		return v
	}
	if len(p.ReturnCodes) == 0 {
		return violation{"MQTT-3.9.3-1", "no return code"}
	}
	for _, c := range p.ReturnCodes {
		if c > GrantedQoS2 && c != SubackFailure {
			return violation{"MQTT-3.9.3-2", "reserved return code"}
		}
	}
	return violation{}
}

// AppendTo appends the SUBACK's wire form to dst. It refuses, with an *Error
// wrapping ErrInvalid, a packet identifier of 0 [MQTT-2.3.1-1], an empty list
// and a reserved return code [MQTT-3.9.3-2].
func (p *Suback) AppendTo(dst []byte) ([]byte, error) {
	if v := p.check(); v.broken() {
		return dst, v.asError(SUBACK, ErrInvalid)
	}
	n := 2 + len(p.ReturnCodes)
	if n > MaxRemainingLength {
		return dst, &Error{Type: SUBACK, Rule: "2.2.3", Reason: "remaining length over 268435455", Err: ErrPacketTooLarge}
	}
	dst = appendHeader(dst, byte(SUBACK)<<4, n)
	dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	for _, c := range p.ReturnCodes {
		dst = append(dst, byte(c))
	}
	return dst, nil
}

func (p *Suback) decode(_ byte, body []byte) error {
	if len(body) < 2 {
		return malformed(SUBACK, "3.9.2", "variable header cut short")
	}
	p.PacketID = binary.BigEndian.Uint16(body)
	p.ReturnCodes = subackCodes(body[2:len(body):len(body)])
	if v := p.check(); v.broken() {
		return v.asError(SUBACK, ErrMalformed)
	}
	return nil
}

// Clone returns a deep copy of p whose return codes do not alias p's.
func (p *Suback) Clone() *Suback {
	c := &Suback{PacketID: p.PacketID}
	if p.ReturnCodes != nil {
		c.ReturnCodes = append(make([]SubackCode, 0, len(p.ReturnCodes)), p.ReturnCodes...)
	}
	return c
}
