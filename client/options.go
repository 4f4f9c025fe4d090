package client

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Defaults for zero Options fields.
const (
	DefaultKeepAlive      = 60 * time.Second
	DefaultConnectTimeout = 30 * time.Second
	DefaultPingTimeout    = 30 * time.Second
	DefaultInboxSize      = 256
	DefaultMaxInflight    = 20
	DefaultMaxPending     = 1000
)

// Options configures a Client. The zero value (or nil) is usable: a
// generated client identifier with a clean session, keep alive 60 s. Dial
// copies the Options, so changing them afterwards has no effect.
type Options struct {
	// ClientID identifies the client to the server and keys its session
	// (spec 3.1.3.1). When empty, Dial generates 20 characters of
	// [0-9a-zA-Z], which every server accepts [MQTT-3.1.3-5], and connects
	// with a clean session whatever CleanSession says, since a session
	// stored under a random identifier could never be resumed.
	ClientID string

	// CleanSession asks the server to discard any stored session and start
	// a new one that ends with the connection [MQTT-3.1.2-6]. When false
	// (the zero value), the server resumes the session stored under
	// ClientID, and keeps it after the connection ends [MQTT-3.1.2-4]: it
	// queues QoS 1 and 2 messages for the client meanwhile and delivers
	// them on the next connection. Set it unless that is what you want.
	CleanSession bool

	// KeepAlive is the longest interval the client lets pass without
	// sending a packet; when nothing was sent, or nothing received, for
	// that long it sends PINGREQ [MQTT-3.1.2-23]. It is sent in whole
	// seconds, rounded up (1.5 s becomes 2 s, which is then the interval
	// used), at most 65,535 s. Zero means DefaultKeepAlive (60 s); a
	// negative value turns keep alive off (sent as 0), and with it the
	// detection of dead links.
	KeepAlive time.Duration

	// PingTimeout is how long the client waits for PINGRESP before it
	// closes the connection with ErrPingTimeout; it also bounds, together
	// with KeepAlive, how long one network write may block. Zero or
	// negative means half of KeepAlive, at least 1 s and at most
	// DefaultPingTimeout (30 s), so a dead link is noticed within about 1.5
	// times the keep alive.
	PingTimeout time.Duration

	// ConnectTimeout bounds Dial: the network dial, any TLS or WebSocket
	// handshake, CONNECT and the wait for CONNACK. Zero or negative means
	// DefaultConnectTimeout (30 s). A context deadline passed to Dial
	// applies as well.
	ConnectTimeout time.Duration

	// Username and Password are sent in CONNECT when Username is not empty
	// (spec 3.1.3.4, 3.1.3.5). Password is binary data of at most 65,535
	// bytes and needs a Username [MQTT-3.1.2-22]. The password is never
	// logged.
	Username string
	Password []byte

	// Will, when not nil, is published by the server if the connection
	// ends without DISCONNECT [MQTT-3.1.2-8].
	Will *Will

	// ProtocolLevel selects MQTT 3.1.1 (4, the default when zero) or MQTT
	// 3.1 (3, protocol name "MQIsdp") for old brokers.
	ProtocolLevel byte

	// MaxPacketSize is the largest packet, in bytes and fixed header
	// included, the client sends or accepts: Dial refuses a larger CONNECT
	// (ErrInvalidOptions), Publish, Subscribe and Unsubscribe a larger
	// packet (packet.ErrPacketTooLarge), before sending anything; a larger
	// packet from the server closes the connection before its body is
	// read. MQTT 3.1.1 has no way to learn the server's limit (IoT Hub's is
	// 16 KiB), nor to refuse one message: a persistent session whose server
	// holds a QoS 1 or 2 message over the limit gets it again on every
	// connection, and loses every one of them, so keep the limit above
	// what may be published to the client's subscriptions. Zero or
	// negative means packet.DefaultMaxSize (1 MiB); larger values are cut
	// to packet.MaxPacketSize. (netx.WebSocketOptions.MaxFrameSize bounds
	// WebSocket frames separately.)
	MaxPacketSize int

	// MaxInflight is the number of QoS 1 and 2 PUBLISHes that may await
	// their acknowledgements at once; Publish waits for room beyond it.
	// Brokers bound what they accept from a client: mosquitto 2.0, by
	// default, answers QoS 2 messages beyond 20 in flight with PUBREC and
	// drops them, and MQTT 3.1.1 has no way to tell the client. Zero means
	// DefaultMaxInflight (20), and so does a negative value; larger values
	// are cut to 65,535.
	MaxInflight int

	// MaxPending is the number of QoS 1 and 2 messages accepted by Publish
	// and not yet completed, in flight or waiting to be sent (while the
	// window is full, or a Session is offline); Publish waits for room
	// beyond it, within its context. Zero or negative means
	// DefaultMaxPending (1000); larger values are cut to 65,535, the number
	// of packet identifiers, which SUBSCRIBE and UNSUBSCRIBE draw from too.
	MaxPending int

	// Store keeps the session's outbound QoS 1 and 2 messages and received
	// QoS 2 packet identifiers (see Store). Nil means none: the Client or
	// Session keeps its session in memory for as long as it lives. A
	// MemoryStore outlives it, for the next Client to resume from. With a FileStore, a
	// program that restarts with the same store, client identifier and
	// clean session 0 sends again every message whose Publish was
	// accepted, and delivers no QoS 2 message twice. The client does not
	// close the Store.
	Store Store

	// InboxSize is the number of received messages that may wait for their
	// handlers. When it is full the client stops reading from the network,
	// so the server's flow control and TCP apply back-pressure, except
	// while one of the client's own requests (a PINGREQ included) awaits its
	// acknowledgement: then it reads on and queues beyond InboxSize, so
	// that neither keep alive nor a handler waiting for an acknowledgement
	// is held up. Zero or negative means DefaultInboxSize (256).
	InboxSize int

	// DefaultHandler receives messages that match no subscription's filter,
	// such as messages of a resumed session. Nil drops them (QoS 1 and 2
	// messages are still acknowledged [MQTT-4.5.0-2]).
	DefaultHandler Handler

	// Logger receives a Debug record for every control packet sent and
	// received, and Warn records for anomalies. Nil discards everything.
	Logger *slog.Logger
}

// Will is the will message of a connection (spec 3.1.2.5).
type Will struct {
	Topic   string // topic name; no wildcards [MQTT-3.1.3-10]
	Payload []byte // 0 to 65,535 bytes
	QoS     byte   // 0, 1 or 2 [MQTT-3.1.2-14]
	Retain  bool
}

// normalize returns a copy of o with defaults filled in, and the CONNECT it
// describes. It returns an error wrapping ErrInvalidOptions for options that
// cannot make a valid CONNECT; nothing has been sent then.
func (o *Options) normalize() (Options, *packet.Connect, error) {
	var n Options
	if o != nil {
		n = *o
	}
	if n.KeepAlive == 0 {
		n.KeepAlive = DefaultKeepAlive
	}
	if n.KeepAlive > 65535*time.Second {
		return n, nil, fmt.Errorf("%w: keep alive %v over 65535 s", ErrInvalidOptions, n.KeepAlive)
	}
	if n.PingTimeout <= 0 {
		n.PingTimeout = min(max(n.KeepAlive/2, time.Second), DefaultPingTimeout)
	}
	if n.ConnectTimeout <= 0 {
		n.ConnectTimeout = DefaultConnectTimeout
	}
	if n.MaxPacketSize <= 0 {
		n.MaxPacketSize = packet.DefaultMaxSize
	}
	n.MaxPacketSize = min(n.MaxPacketSize, packet.MaxPacketSize)
	if n.MaxInflight <= 0 {
		n.MaxInflight = DefaultMaxInflight
	}
	if n.MaxInflight > 65535 {
		n.MaxInflight = 65535
	}
	if n.MaxPending <= 0 {
		n.MaxPending = DefaultMaxPending
	}
	n.MaxPending = min(n.MaxPending, 65535)
	if n.InboxSize <= 0 {
		n.InboxSize = DefaultInboxSize
	}
	if n.Logger == nil {
		n.Logger = discard
	}
	if n.ClientID == "" {
		n.ClientID = generateClientID()
		n.CleanSession = true
	}
	c := &packet.Connect{
		ProtocolLevel: n.ProtocolLevel,
		CleanSession:  n.CleanSession,
		ClientID:      []byte(n.ClientID),
	}
	if n.KeepAlive > 0 {
		c.KeepAlive = uint16((n.KeepAlive + time.Second - 1) / time.Second)
	}
	if n.Username != "" {
		c.UsernameFlag, c.Username = true, []byte(n.Username)
		if n.Password != nil {
			c.PasswordFlag, c.Password = true, n.Password
		}
	} else if len(n.Password) > 0 {
		return n, nil, fmt.Errorf("%w: a password needs a user name [MQTT-3.1.2-22]", ErrInvalidOptions)
	}
	if w := n.Will; w != nil {
		c.WillFlag, c.WillQoS, c.WillRetain = true, w.QoS, w.Retain
		c.WillTopic, c.WillMessage = []byte(w.Topic), w.Payload
		if c.WillMessage == nil {
			c.WillMessage = []byte{}
		}
	}
	if err := checkConnect(c, n.MaxPacketSize); err != nil {
		return n, nil, err
	}
	return n, c, nil
}

// checkConnect returns an error wrapping ErrInvalidOptions when c is not a
// valid CONNECT or is larger than limit bytes.
func checkConnect(c *packet.Connect, limit int) error {
	if _, err := c.AppendTo(nil); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if n := c.Size(); n > limit {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, &packet.Error{Type: packet.CONNECT, Reason: strconv.Itoa(n) + " bytes, over Options.MaxPacketSize", Err: packet.ErrPacketTooLarge})
	}
	return nil
}

var discard = slog.New(slog.DiscardHandler)

const idChars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// generateClientID returns 20 random characters of [0-9a-zA-Z].
func generateClientID() string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = idChars[randIndex(len(idChars))]
	}
	return string(b)
}

func randIndex(n int) int {
	var b [1]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if int(b[0]) < 256/n*n {
			return int(b[0]) % n
		}
	}
}
