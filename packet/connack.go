package packet

import "strconv"

// ConnackCode is the return code of a CONNACK (spec 3.2.2.3, Table 3.1).
type ConnackCode byte

// CONNACK return codes (spec Table 3.1). Values 6 to 255 are reserved.
const (
	Accepted                    ConnackCode = 0 // connection accepted
	UnacceptableProtocolVersion ConnackCode = 1 // the server does not support the protocol level
	IdentifierRejected          ConnackCode = 2 // the client identifier is not allowed
	ServerUnavailable           ConnackCode = 3 // the MQTT service is unavailable
	BadUsernameOrPassword       ConnackCode = 4 // the user name or password is malformed or wrong
	NotAuthorized               ConnackCode = 5 // the client is not authorized to connect
)

var connackNames = [...]string{
	"connection accepted",
	"unacceptable protocol version",
	"identifier rejected",
	"server unavailable",
	"bad user name or password",
	"not authorized",
}

// String returns the return code's meaning as Table 3.1 words it.
func (c ConnackCode) String() string {
	if int(c) < len(connackNames) {
		return connackNames[c]
	}
	return "reserved return code " + strconv.Itoa(int(c))
}

// Connack is the CONNACK packet, the server's answer to CONNECT (spec 3.2).
type Connack struct {
	// SessionPresent says the server resumed a stored session; it is
	// always false when CleanSession was set [MQTT-3.2.2-1] or the
	// connection was refused [MQTT-3.2.2-4].
	SessionPresent bool
	// ReturnCode is Accepted or the reason for the refusal.
	ReturnCode ConnackCode
}

// Type returns CONNACK.
func (*Connack) Type() Type { return CONNACK }

// Size returns 4, the length of every CONNACK in bytes.
func (*Connack) Size() int { return 4 }

func (p *Connack) check() violation {
	if p.ReturnCode > NotAuthorized {
		return violation{"3.2.2.3", "reserved return code"}
	}
	if p.SessionPresent && p.ReturnCode != Accepted {
		return violation{"MQTT-3.2.2-4", "session present on a refused connection"}
	}
	return violation{}
}

// AppendTo appends the CONNACK's wire form to dst. It refuses a reserved
// return code (spec 3.2.2.3) and session present on a refusal
// [MQTT-3.2.2-4] with an *Error wrapping ErrInvalid.
func (p *Connack) AppendTo(dst []byte) ([]byte, error) {
	if v := p.check(); v.broken() {
		return dst, v.asError(CONNACK, ErrInvalid)
	}
	var ack byte
	if p.SessionPresent {
		ack = 1
	}
	return append(dst, byte(CONNACK)<<4, 2, ack, byte(p.ReturnCode)), nil
}

func (p *Connack) decode(_ byte, body []byte) error {
	if len(body) != 2 {
		return malformed(CONNACK, "3.2.1", "remaining length is not 2")
	}
	if body[0]&0xfe != 0 {
		return malformed(CONNACK, "3.2.2.1", "reserved acknowledge flags are set")
	}
	*p = Connack{SessionPresent: body[0] == 1, ReturnCode: ConnackCode(body[1])}
	if v := p.check(); v.broken() {
		return v.asError(CONNACK, ErrMalformed)
	}
	return nil
}
