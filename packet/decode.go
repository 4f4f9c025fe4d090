package packet

import "fmt"

// New returns a new zero packet of type t, or nil if t is not a control
// packet type (0, 15 or above).
func New(t Type) Packet {
	switch t {
	case CONNECT:
		return new(Connect)
	case CONNACK:
		return new(Connack)
	case PUBLISH:
		return new(Publish)
	case PUBACK:
		return new(Puback)
	case PUBREC:
		return new(Pubrec)
	case PUBREL:
		return new(Pubrel)
	case PUBCOMP:
		return new(Pubcomp)
	case SUBSCRIBE:
		return new(Subscribe)
	case SUBACK:
		return new(Suback)
	case UNSUBSCRIBE:
		return new(Unsubscribe)
	case UNSUBACK:
		return new(Unsuback)
	case PINGREQ:
		return new(Pingreq)
	case PINGRESP:
		return new(Pingresp)
	case DISCONNECT:
		return new(Disconnect)
	}
	return nil
}

// parseHeader reads the fixed header at the start of b. It returns the
// packet type, the flag nibble, the Remaining Length and the header's size
// in bytes; size 0 means b ends inside the header. The type and the flags
// are checked as soon as the first byte is there, so a bad packet is
// refused before its length is even read: types 0 and 15 are reserved
// (spec 2.2.1), and the flags must be those of Table 2.2 [MQTT-2.2.2-2]
// (for PUBLISH, QoS 3 is malformed [MQTT-3.3.1-4]).
func parseHeader(b []byte) (t Type, flags byte, remaining, size int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, 0, nil
	}
	t, flags = Type(b[0]>>4), b[0]&0x0f
	if !validFirst[b[0]] {
		return t, flags, 0, 0, firstByteError(t, flags)
	}
	if len(b) >= 2 && b[1] < 0x80 {
		return t, flags, int(b[1]), 2, nil // the usual one-byte length
	}
	remaining, n := consumeVarint(b[1:])
	switch {
	case n < 0:
		return t, flags, 0, 0, malformed(t, "2.2.3", "remaining length longer than 4 bytes")
	case n == 0:
		return t, flags, 0, 0, nil
	}
	return t, flags, remaining, 1 + n, nil
}

// validFirst tells, for every value of a fixed header's first byte, whether
// it names a control packet type with flags Table 2.2 allows.
var validFirst = func() (v [256]bool) {
	for b := range 256 {
		v[b] = firstByteError(Type(b>>4), byte(b)&0x0f) == nil
	}
	return v
}()

// firstByteError checks a packet type and its flags: types 0 and 15 are
// reserved (spec 2.2.1), the flags must be those of Table 2.2
// [MQTT-2.2.2-2], and for PUBLISH QoS 3 is malformed [MQTT-3.3.1-4].
func firstByteError(t Type, flags byte) error {
	switch want, fixed := t.flags(); {
	case t == 0 || t == 15:
		return &Error{Rule: "2.2.1", Reason: fmt.Sprintf("reserved packet type %d", t), Err: ErrMalformed}
	case fixed && flags != want:
		return malformed(t, flagRule[t], "invalid fixed header flags")
	case !fixed && flags&0x6 == 0x6:
		return malformed(t, "MQTT-3.3.1-4", "QoS 3")
	}
	return nil
}

// flagRule is the rule a wrong flag nibble breaks, by packet type: the
// type's own rule where it has one, else the general [MQTT-2.2.2-2].
var flagRule = [16]string{
	PUBREL:      "MQTT-3.6.1-1",
	SUBSCRIBE:   "MQTT-3.8.1-1",
	UNSUBSCRIBE: "MQTT-3.10.1-1",
	DISCONNECT:  "MQTT-3.14.1-1",
	CONNECT:     "MQTT-2.2.2-2", CONNACK: "MQTT-2.2.2-2", PUBACK: "MQTT-2.2.2-2", PUBREC: "MQTT-2.2.2-2",
	PUBCOMP: "MQTT-2.2.2-2", SUBACK: "MQTT-2.2.2-2", UNSUBACK: "MQTT-2.2.2-2", PINGREQ: "MQTT-2.2.2-2",
	PINGRESP: "MQTT-2.2.2-2",
}

// Unmarshal decodes the control packet at the start of b into p, which must
// be of the type the packet's fixed header names, and returns the number of
// bytes the packet takes. p's byte fields alias b afterwards, and slices in
// p (Subscribe.Subscriptions, Unsubscribe.Filters) are reused, so decoding
// into a warm value allocates nothing.
//
// Errors: io.ErrUnexpectedEOF when b ends before the packet does; an *Error
// wrapping ErrMalformed for a packet that breaks the specification; an error
// wrapping ErrTypeMismatch when p is of another type. p's content is
// unspecified after an error.
func Unmarshal(b []byte, p Packet) (int, error) {
	t, flags, remaining, size, err := parseHeader(b)
	if err != nil {
		return 0, err
	}
	if size == 0 || len(b)-size < remaining {
		return 0, errUnexpectedEOF
	}
	if t != p.Type() {
		return 0, fmt.Errorf("%w: bytes hold %v, value is %v", ErrTypeMismatch, t, p.Type())
	}
	if err := p.decode(flags, b[size:size+remaining:size+remaining]); err != nil {
		return 0, err
	}
	return size + remaining, nil
}

// Parse decodes the control packet at the start of b into a new value and
// returns it and the number of bytes it takes. The packet's byte fields
// alias b. Errors are those of Unmarshal.
func Parse(b []byte) (Packet, int, error) {
	t, _, _, size, err := parseHeader(b)
	if err != nil {
		return nil, 0, err
	}
	if size == 0 {
		return nil, 0, errUnexpectedEOF
	}
	p := New(t)
	n, err := Unmarshal(b, p)
	if err != nil {
		return nil, 0, err
	}
	return p, n, nil
}
