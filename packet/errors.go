package packet

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error this package returns for a packet wraps one of
// them; use errors.Is to branch, and errors.As with *Error for details.
var (
	// ErrMalformed reports a received packet that breaks the specification.
	// The connection it came from must be closed [MQTT-4.8.0-1].
	ErrMalformed = errors.New("packet: malformed packet")

	// ErrInvalid reports a packet that AppendTo refuses to encode because the
	// result would break the specification.
	ErrInvalid = errors.New("packet: invalid packet")

	// ErrPacketTooLarge reports a packet larger than the configured limit, or
	// one whose Remaining Length exceeds MaxRemainingLength (spec 2.2.3).
	ErrPacketTooLarge = errors.New("packet: packet too large")

	// ErrTypeMismatch reports that Unmarshal was given a value of a
	// different packet type than the bytes hold.
	ErrTypeMismatch = errors.New("packet: packet type mismatch")
)

// An Error reports a packet that breaks a rule of the specification, on
// encode (Err is ErrInvalid or ErrPacketTooLarge) or decode (Err is
// ErrMalformed or ErrPacketTooLarge).
type Error struct {
	Type   Type   // the packet's type, or 0 when the type itself is the fault
	Rule   string // conformance id such as "MQTT-3.3.1-4", or a spec section such as "2.2.3"
	Reason string // what is wrong, in a few words
	Err    error  // the sentinel this error wraps
}

// Error returns a message such as
// "packet: malformed packet: PUBLISH: QoS 3 [MQTT-3.3.1-4]".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	b.WriteString(": ")
	if e.Type != 0 {
		b.WriteString(e.Type.String())
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	if strings.HasPrefix(e.Rule, "MQTT-") {
		b.WriteString(" [" + e.Rule + "]")
	} else if e.Rule != "" {
		b.WriteString(" (spec " + e.Rule + ")")
	}
	return b.String()
}

// Unwrap returns the sentinel: ErrMalformed, ErrInvalid or ErrPacketTooLarge.
func (e *Error) Unwrap() error { return e.Err }

// violation is a broken rule found by a check shared by the encoder and the
// decoder. The zero value means no rule is broken; it costs nothing to
// return, and becomes an *Error only on failure.
type violation struct {
	rule   string
	reason string
}

func (v violation) broken() bool { return v.rule != "" }

// asError turns v into an *Error of kind sentinel for packet type t.
func (v violation) asError(t Type, sentinel error) error {
	return &Error{Type: t, Rule: v.rule, Reason: v.reason, Err: sentinel}
}

func malformed(t Type, rule, reason string) error {
	return &Error{Type: t, Rule: rule, Reason: reason, Err: ErrMalformed}
}

func invalid(t Type, rule, reason string) error {
	return &Error{Type: t, Rule: rule, Reason: reason, Err: ErrInvalid}
}
