package packet

import (
	"encoding/binary"
	"github.com/devicemq/mqtt/internal/redact"
	"log/slog"
	"reflect"
)

// Protocol levels (spec 3.1.2.2).
const (
	Level311 byte = 4 // MQTT 3.1.1, protocol name "MQTT"
	Level31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"
)

// Connect flag bits (spec 3.1.2.3, Figure 3.4).
const (
	flagCleanSession = 0x02
	flagWill         = 0x04
	flagWillRetain   = 0x20
	flagPassword     = 0x40
	flagUsername     = 0x80
	shiftWillQoS     = 3
)

// Connect is the CONNECT packet, the first packet a client sends on a
// connection [MQTT-3.1.0-1] (spec 3.1).
//
// Byte fields alias the input after decoding and are not retained by
// AppendTo. A field whose flag is false must be empty.
type Connect struct {
	// ProtocolLevel is 4 for MQTT 3.1.1 (protocol name "MQTT") or 3 for
	// MQTT 3.1 (protocol name "MQIsdp"). Zero encodes as 4.
	ProtocolLevel byte
	// CleanSession discards any previous session and starts a new one
	// [MQTT-3.1.2-6]; false resumes the session stored under ClientID.
	CleanSession bool
	// KeepAlive is the longest interval, in seconds, the client lets pass
	// between two packets it sends; 0 turns keep alive off (spec 3.1.2.10).
	KeepAlive uint16
	// ClientID identifies the client and keys its session (spec 3.1.3.1).
	// It may be empty only with CleanSession [MQTT-3.1.3-7]; MQTT 3.1
	// allows 1 to 23 bytes.
	ClientID []byte

	// WillFlag says the packet carries a will message, published by the
	// server when the connection ends without DISCONNECT [MQTT-3.1.2-8].
	WillFlag    bool
	WillQoS     byte   // QoS of the will message, 0 to 2 [MQTT-3.1.2-14]
	WillRetain  bool   // publish the will message as retained
	WillTopic   []byte // topic name of the will message [MQTT-3.1.3-10]
	WillMessage []byte // payload of the will message, 0 to 65,535 bytes

	UsernameFlag bool   // the packet carries a user name [MQTT-3.1.2-18]
	Username     []byte // UTF-8 user name [MQTT-3.1.3-11]
	PasswordFlag bool   // the packet carries a password; needs UsernameFlag [MQTT-3.1.2-22]
	Password     []byte // password, binary data of 0 to 65,535 bytes
}

// Type returns CONNECT.
func (*Connect) Type() Type { return CONNECT }

func (p *Connect) level() byte {
	if p.ProtocolLevel == 0 {
		return Level311
	}
	return p.ProtocolLevel
}

func protocolName(level byte) string {
	if level == Level31 {
		return "MQIsdp"
	}
	return "MQTT"
}

func (p *Connect) remaining() int {
	n := 2 + len(protocolName(p.level())) + 1 + 1 + 2 + 2 + len(p.ClientID)
	if p.WillFlag {
		n += 2 + len(p.WillTopic) + 2 + len(p.WillMessage)
	}
	if p.UsernameFlag {
		n += 2 + len(p.Username)
	}
	if p.PasswordFlag {
		n += 2 + len(p.Password)
	}
	return n
}

// Size returns the length of the packet's wire form in bytes.
func (p *Connect) Size() int { n := p.remaining(); return headerSize(n) + n }

// check applies the rules on a CONNECT's content that both the sender and
// the receiver can see (spec 3.1.2, 3.1.3). Decoding has already checked
// the protocol name and the reserved flag bit.
func (p *Connect) check() violation {
	level := p.level()
	if level != Level311 && level != Level31 {
		return violation{"MQTT-3.1.2-2", "unsupported protocol level"}
	}
	if v := checkUTF8(p.ClientID, "client identifier"); v.broken() {
		return v
	}
	// A server answers these two with CONNACK 0x02 [MQTT-3.1.3-8] rather
	// than just closing: errors.As gives it the rule to decide by.
	if len(p.ClientID) == 0 && !p.CleanSession {
		return violation{"MQTT-3.1.3-7", "empty client identifier without clean session"}
	}
	if level == Level31 && (len(p.ClientID) < 1 || len(p.ClientID) > 23) {
		return violation{"3.1 3.1.3.1", "MQTT 3.1 client identifier not 1 to 23 bytes"}
	}
	if p.WillFlag {
		if v := checkQoS(p.WillQoS, "MQTT-3.1.2-14", "will QoS"); v.broken() {
			return v
		}
		if v := checkTopicName(p.WillTopic, "will topic"); v.broken() {
			return v
		}
		if v := checkBinary(p.WillMessage, "will message"); v.broken() {
			return v
		}
	} else {
		if p.WillQoS != 0 {
			return violation{"MQTT-3.1.2-13", "will QoS set without will flag"}
		}
		if p.WillRetain {
			return violation{"MQTT-3.1.2-15", "will retain set without will flag"}
		}
		if len(p.WillTopic) != 0 || len(p.WillMessage) != 0 {
			return violation{"MQTT-3.1.2-11", "will fields set without will flag"}
		}
	}
	if p.UsernameFlag {
		if v := checkUTF8(p.Username, "user name"); v.broken() {
			return v
		}
	} else if len(p.Username) != 0 {
		return violation{"MQTT-3.1.2-18", "user name set without user name flag"}
	}
	if p.PasswordFlag {
		if !p.UsernameFlag {
			return violation{"MQTT-3.1.2-22", "password without user name"}
		}
		if v := checkBinary(p.Password, "password"); v.broken() {
			return v
		}
	} else if len(p.Password) != 0 {
		return violation{"MQTT-3.1.2-20", "password set without password flag"}
	}
	return violation{}
}

func (p *Connect) flags() byte {
	var f byte
	if p.CleanSession {
		f |= flagCleanSession
	}
	if p.WillFlag {
		f |= flagWill | p.WillQoS<<shiftWillQoS
		if p.WillRetain {
			f |= flagWillRetain
		}
	}
	if p.UsernameFlag {
		f |= flagUsername
	}
	if p.PasswordFlag {
		f |= flagPassword
	}
	return f
}

// AppendTo appends the CONNECT's wire form to dst (spec 3.1). It refuses,
// with an *Error wrapping ErrInvalid, a packet that breaks a rule of spec
// 3.1.2 or 3.1.3: among others will fields without the will flag
// [MQTT-3.1.2-11], will QoS 3 [MQTT-3.1.2-14], a password without a user
// name [MQTT-3.1.2-22], an empty client identifier without clean session
// [MQTT-3.1.3-7], or ill-formed UTF-8 [MQTT-1.5.3-1].
func (p *Connect) AppendTo(dst []byte) ([]byte, error) {
	if v := p.check(); v.broken() {
		return dst, v.asError(CONNECT, ErrInvalid)
	}
	level := p.level()
	name := protocolName(level)
	dst = appendHeader(dst, byte(CONNECT)<<4, p.remaining())
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(name)))
	dst = append(dst, name...)
	dst = append(dst, level, p.flags())
	dst = binary.BigEndian.AppendUint16(dst, p.KeepAlive)
	dst = appendString(dst, p.ClientID)
	if p.WillFlag {
		dst = appendString(dst, p.WillTopic)
		dst = appendString(dst, p.WillMessage)
	}
	if p.UsernameFlag {
		dst = appendString(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendString(dst, p.Password)
	}
	return dst, nil
}

func (p *Connect) decode(_ byte, body []byte) error {
	r := reader{b: body, ok: true}
	name := r.field()
	level := r.byte()
	flags := r.byte()
	keepAlive := r.uint16()
	if !r.ok {
		return malformed(CONNECT, "3.1.2", "variable header cut short")
	}
	switch {
	case string(name) == "MQTT" && level == Level311, string(name) == "MQIsdp" && level == Level31:
	case string(name) == "MQTT" || string(name) == "MQIsdp":
		// A known name with another level: the server should answer
		// CONNACK 0x01 [MQTT-3.1.2-2]; the rest cannot be parsed safely.
		return malformed(CONNECT, "MQTT-3.1.2-2", "unsupported protocol level")
	default:
		return malformed(CONNECT, "MQTT-3.1.2-1", "protocol name is not \"MQTT\"")
	}
	if flags&0x01 != 0 {
		return malformed(CONNECT, "MQTT-3.1.2-3", "reserved connect flag is set")
	}
	*p = Connect{
		ProtocolLevel: level,
		CleanSession:  flags&flagCleanSession != 0,
		KeepAlive:     keepAlive,
		WillFlag:      flags&flagWill != 0,
		WillQoS:       flags >> shiftWillQoS & 0x3,
		WillRetain:    flags&flagWillRetain != 0,
		UsernameFlag:  flags&flagUsername != 0,
		PasswordFlag:  flags&flagPassword != 0,
	}
	// Payload order: client identifier, will topic, will message, user
	// name, password [MQTT-3.1.3-1].
	if p.ClientID = r.field(); !r.ok {
		return malformed(CONNECT, "MQTT-3.1.3-3", "client identifier missing")
	}
	if p.WillFlag {
		p.WillTopic = r.field()
		if p.WillMessage = r.field(); !r.ok {
			return malformed(CONNECT, "MQTT-3.1.2-9", "will flag set, will topic or message missing")
		}
	}
	if p.UsernameFlag {
		if p.Username = r.field(); !r.ok {
			return malformed(CONNECT, "MQTT-3.1.2-19", "user name flag set, user name missing")
		}
	}
	if p.PasswordFlag {
		if p.Password = r.field(); !r.ok {
			return malformed(CONNECT, "MQTT-3.1.2-21", "password flag set, password missing")
		}
	}
	if len(r.b) != 0 {
		return malformed(CONNECT, "3.1.3", "bytes after the last payload field")
	}
	if v := p.check(); v.broken() {
		return v.asError(CONNECT, ErrMalformed)
	}
	return nil
}

// Clone returns a deep copy of p whose byte fields do not alias p's. It
// makes one allocation for the bytes.
func (p *Connect) Clone() *Connect {
	c := *p
	buf := make([]byte, 0, len(p.ClientID)+len(p.WillTopic)+len(p.WillMessage)+len(p.Username)+len(p.Password))
	c.ClientID, buf = cloneInto(buf, p.ClientID)
	c.WillTopic, buf = cloneInto(buf, p.WillTopic)
	c.WillMessage, buf = cloneInto(buf, p.WillMessage)
	c.Username, buf = cloneInto(buf, p.Username)
	c.Password, _ = cloneInto(buf, p.Password)
	return &c
}

// String formats p with Password redacted (when PasswordFlag is set or a
// password is present), as every fmt verb (%#v through GoString) and slog
// (LogValue) show it: secrets never print.
func (p Connect) String() string {
	return redact.Struct(p, func(field string, v reflect.Value) (string, bool) {
		if field == "Password" {
			return redact.Secret(v), true
		}
		return "", false
	})
}

// GoString is String, for %#v.
func (p Connect) GoString() string { return p.String() }

// LogValue implements slog.LogValuer with String's text.
func (p Connect) LogValue() slog.Value { return slog.StringValue(p.String()) }
