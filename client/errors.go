package client

import (
	"errors"
	"fmt"
	"net"

	"github.com/devicemq/mqtt/packet"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrClosed is Client.Err after Disconnect or Close, and is wrapped by
	// the errors of calls made on a client whose connection has ended
	// (which wrap ErrNotSent too). A Publish already waiting when the
	// client is closed may return an error wrapping ErrClosed together
	// with ErrPending (a Store keeps the message) or ErrConnectionLost
	// (it was written): test those first. It wraps net.ErrClosed.
	ErrClosed = fmt.Errorf("mqtt: client closed: %w", net.ErrClosed)

	// ErrNotSent reports that a request was not sent, or that a QoS 1 or 2
	// message was withdrawn before it was ever written: nothing of it
	// reached the server and the client keeps nothing of it, so retrying
	// it is safe.
	ErrNotSent = errors.New("mqtt: request not sent")

	// ErrPending reports that Publish stopped waiting (its context ended, or
	// the Client or Session ended) while its QoS 1 or 2 message stays
	// accepted: written at least once, or kept by a Store for the next
	// client that uses it. The client goes on sending it until the server
	// acknowledges it or the message is dropped (Options.OnDrop tells), or,
	// for a Client without a Store, until its connection ends, after which
	// the outcome is unknown; publishing it again would duplicate it.
	ErrPending = errors.New("mqtt: message accepted and still pending")

	// ErrDropped is wrapped by the errors of messages the client gave up
	// on before their acknowledgement: ErrExpired, ErrTooManyAttempts and
	// ErrDiscarded. A dropped message is never sent again; if it was
	// written before, the server may or may not have it.
	ErrDropped = errors.New("mqtt: message dropped")

	// ErrExpired reports a message dropped because Message.Expires passed
	// before it could be sent or sent again. It wraps ErrDropped.
	ErrExpired = fmt.Errorf("%w: expired", ErrDropped)

	// ErrTooManyAttempts reports a message dropped because
	// Options.MaxAttempts connections in a row ended while it was the
	// oldest message awaiting an acknowledgement: a message the server
	// cannot take (it closes the connection each time) would otherwise
	// block every message after it. It wraps ErrDropped.
	ErrTooManyAttempts = fmt.Errorf("%w: too many attempts", ErrDropped)

	// ErrDiscarded reports a message dropped by Discard. It wraps
	// ErrDropped.
	ErrDiscarded = fmt.Errorf("%w: discarded", ErrDropped)

	// ErrNotConnected reports a QoS 0 Publish while a Session has no
	// connection: QoS 0 messages are not stored (QoS 1 and 2 ones are). It
	// wraps ErrNotSent.
	ErrNotConnected = fmt.Errorf("mqtt: not connected: %w", ErrNotSent)

	// ErrConnectionLost reports that the connection ended, for whatever
	// reason (Disconnect included), after a request was written and before
	// its acknowledgement arrived: the server may or may not have acted on
	// it. For a PUBLISH that a Store keeps, the error wraps ErrPending too
	// (the Store sends it again with the next client): test for ErrPending
	// first.
	ErrConnectionLost = errors.New("mqtt: connection lost before acknowledgement")

	// ErrPingTimeout reports that the server did not answer a PINGREQ within
	// Options.PingTimeout; the connection is treated as dead and closed
	// (spec 3.1.2.10, [MQTT-3.12.4-1]).
	ErrPingTimeout = errors.New("mqtt: no PINGRESP from the server")

	// ErrProtocolViolation reports a packet from the server that is well
	// formed but breaks the protocol, such as a second CONNACK or a PUBACK
	// for a QoS 2 message. The connection is closed [MQTT-4.8.0-1].
	ErrProtocolViolation = errors.New("mqtt: protocol violation by the server")

	// ErrSubscriptionFailed reports that the server refused one or more
	// topic filters of a SUBSCRIBE with return code 0x80 (spec 3.9.3).
	ErrSubscriptionFailed = errors.New("mqtt: subscription refused")

	// ErrInvalidOptions reports Options that cannot produce a valid CONNECT.
	ErrInvalidOptions = errors.New("mqtt: invalid options")
)

// CONNACK refusals (spec 3.2.2.3, Table 3.1), for errors.Is against an error
// returned by Dial. Each is a *ConnackError.
var (
	ErrUnacceptableProtocolVersion = &ConnackError{Code: packet.UnacceptableProtocolVersion}
	ErrIdentifierRejected          = &ConnackError{Code: packet.IdentifierRejected}
	ErrServerUnavailable           = &ConnackError{Code: packet.ServerUnavailable}
	ErrBadUsernameOrPassword       = &ConnackError{Code: packet.BadUsernameOrPassword}
	ErrNotAuthorized               = &ConnackError{Code: packet.NotAuthorized}
)

// A ConnackError reports that the server refused the connection with a
// non-zero CONNACK return code (spec 3.2.2.3). The server closes the
// connection afterwards [MQTT-3.2.2-5]; retrying without changing what
// caused the refusal will not help, except for return code 3 (server
// unavailable), which Permanent tells apart.
type ConnackError struct {
	Code packet.ConnackCode
}

// Permanent reports whether the refusal stays until something changes on
// either side (return codes 1, 2, 4 and 5: protocol version, client
// identifier, credentials, authorisation), unlike return code 3, server
// unavailable, which may pass by itself. A Session stops on a permanent
// refusal unless SessionOptions.RetryRefused says otherwise.
func (e *ConnackError) Permanent() bool { return e.Code != packet.ServerUnavailable }

// Error returns a message such as
// "mqtt: connection refused: bad user name or password (return code 4)".
func (e *ConnackError) Error() string {
	return fmt.Sprintf("mqtt: connection refused: %v (return code %d)", e.Code, byte(e.Code))
}

// Is reports whether target is a *ConnackError with the same return code, so
// that errors.Is(err, ErrBadUsernameOrPassword) works.
func (e *ConnackError) Is(target error) bool {
	t, ok := target.(*ConnackError)
	return ok && t.Code == e.Code
}

// errClosedNotSent is returned by calls on a client whose connection has
// ended.
var errClosedNotSent = fmt.Errorf("%w: %w", ErrNotSent, ErrClosed)

// errConnEnded is returned by calls that found a Session's connection
// ending: the Session is not closed, and will have another.
var errConnEnded = fmt.Errorf("%w: the connection ended", ErrNotConnected)

func violation(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocolViolation}, args...)...)
}
