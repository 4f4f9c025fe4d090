package packet

// Type is the control packet type, bits 7-4 of the first byte of the fixed
// header (spec 2.2.1, Table 2.1). Values 0 and 15 are reserved.
type Type uint8

// Control packet types (spec Table 2.1).
const (
	CONNECT     Type = 1  // client request to connect to the server
	CONNACK     Type = 2  // connect acknowledgement
	PUBLISH     Type = 3  // publish message
	PUBACK      Type = 4  // publish acknowledgement (QoS 1)
	PUBREC      Type = 5  // publish received (QoS 2, part 1)
	PUBREL      Type = 6  // publish release (QoS 2, part 2)
	PUBCOMP     Type = 7  // publish complete (QoS 2, part 3)
	SUBSCRIBE   Type = 8  // subscribe request
	SUBACK      Type = 9  // subscribe acknowledgement
	UNSUBSCRIBE Type = 10 // unsubscribe request
	UNSUBACK    Type = 11 // unsubscribe acknowledgement
	PINGREQ     Type = 12 // PING request
	PINGRESP    Type = 13 // PING response
	DISCONNECT  Type = 14 // client is disconnecting
)

var typeNames = [16]string{
	"RESERVED(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "RESERVED(15)",
}

// String returns the packet type's name as the specification writes it,
// such as "PUBLISH".
func (t Type) String() string {
	if t < 16 {
		return typeNames[t]
	}
	return "INVALID"
}

// flags returns the fixed-header flag nibble Table 2.2 requires for t, and
// false for PUBLISH, whose flags carry DUP, QoS and RETAIN [MQTT-2.2.2-1].
func (t Type) flags() (byte, bool) {
	switch t {
	case PUBLISH:
		return 0, false
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		return 0x2, true
	default:
		return 0, true
	}
}

// A Packet is one MQTT control packet. The set is sealed: the implementations
// are the 14 pointer types of this package.
type Packet interface {
	// Type returns the control packet type.
	Type() Type
	// Size returns the length in bytes of the packet's wire form, fixed
	// header included. It is exact for any packet AppendTo accepts.
	Size() int
	// AppendTo appends the packet's wire form to dst and returns the
	// extended slice. If the packet breaks a rule of the specification it
	// returns dst unchanged and an *Error wrapping ErrInvalid. AppendTo does
	// not retain dst.
	AppendTo(dst []byte) ([]byte, error)

	// decode fills the packet from the body of a packet whose fixed header
	// carried flags (the low nibble). The body is exactly Remaining Length
	// bytes, and the packet's byte fields alias it.
	decode(flags byte, body []byte) error
}

// QoS levels (spec 4.3).
const (
	QoS0 byte = 0 // at most once
	QoS1 byte = 1 // at least once
	QoS2 byte = 2 // exactly once
)

// MaxRemainingLength is the largest Remaining Length the four-byte encoding
// can carry: 268,435,455 bytes (spec 2.2.3).
const MaxRemainingLength = 268_435_455

// MaxPacketSize is the size in bytes of the largest possible control packet:
// one type byte, four length bytes and MaxRemainingLength bytes.
const MaxPacketSize = 1 + 4 + MaxRemainingLength

// maxString is the largest length of a UTF-8 string or binary data field:
// the 2-byte length prefix caps it at 65,535 bytes (spec 1.5.3).
const maxString = 65535

// headerSection is the spec section on each packet type's fixed header:
// section 3.N.1 for packet type N.
var headerSection = [16]string{
	"2.2.1", "3.1.1", "3.2.1", "3.3.1", "3.4.1", "3.5.1", "3.6.1", "3.7.1",
	"3.8.1", "3.9.1", "3.10.1", "3.11.1", "3.12.1", "3.13.1", "3.14.1", "2.2.1",
}
