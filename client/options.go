package client

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/devicemq/mqtt/internal/redact"
	"github.com/devicemq/mqtt/packet"
	"reflect"
)

// Defaults for zero Options fields.
const (
	DefaultKeepAlive       = 60 * time.Second
	DefaultConnectTimeout  = 30 * time.Second
	DefaultPingTimeout     = 30 * time.Second
	DefaultInboxSize       = 256
	DefaultInboxBytes      = 1 << 20
	DefaultMaxInflight     = 20
	DefaultMaxPending      = 1000
	DefaultMaxPendingBytes = 16 << 20
	DefaultWriteBufferSize = 64 << 10
)

// Options configures a Client. The zero value (or nil) is usable: a
// generated client identifier with a clean session, keep alive 60 s, and
// every bound at its default. Dial copies the Options, so changing them
// afterwards has no effect.
//
// Every buffer and queue of a client is bounded; the package doc adds the
// bounds up into the peak memory of one client.
type Options struct {
	// ClientID identifies the client to the server and keys its session
	// (spec 3.1.3.1). When empty, Dial generates 20 characters of
	// [0-9a-zA-Z], which every server accepts [MQTT-3.1.3-5]; a persistent
	// session needs a ClientID of its own.
	ClientID string

	// PersistentSession connects with clean session 0: the server resumes
	// the session stored under ClientID and keeps it after the connection
	// ends [MQTT-3.1.2-4], queueing QoS 1 and 2 messages for the client
	// meanwhile. False, the zero value, connects with clean session 1: a new
	// session that ends with the connection [MQTT-3.1.2-6], as paho and
	// most clients do by default.
	PersistentSession bool

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
	// times the keep alive. The wait is suspended while the client holds
	// back reading because its handlers are behind (see InboxSize): the
	// PINGRESP cannot be read then.
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

	// MaxInflight is the number of QoS 1 and 2 PUBLISHes (and PUBRELs) that
	// may be written and await their acknowledgements at once; the others
	// wait their turn, in order. Brokers bound what they accept from a
	// client: mosquitto 2.0, by default, answers QoS 2 messages beyond 20
	// in flight with PUBREC and drops them, and MQTT 3.1.1 has no way to
	// tell the client. Zero or negative means DefaultMaxInflight (20);
	// larger values are cut to 65,535.
	MaxInflight int

	// MaxPending and MaxPendingBytes bound the QoS 1 and 2 messages accepted
	// by Publish and not yet completed, in flight or waiting to be sent
	// (while the window is full, or a Session is offline): their number,
	// and the bytes of their topics and payloads. Publish waits for room
	// beyond either, within its context; a message larger than
	// MaxPendingBytes is accepted once nothing else is pending. Zero or
	// negative means DefaultMaxPending (1000) and DefaultMaxPendingBytes
	// (16 MiB); MaxPending is cut to 65,535, the number of packet
	// identifiers, which SUBSCRIBE and UNSUBSCRIBE draw from too.
	MaxPending      int
	MaxPendingBytes int

	// MaxAttempts, when positive, drops a QoS 1 or 2 message with
	// ErrTooManyAttempts once that many connections in a row have ended
	// while it was the oldest message written and awaiting its
	// acknowledgement: a message that makes the server close the
	// connection (too large for it, refused by its rules) would otherwise
	// be sent first on every connection for ever, and hold up every message
	// after it. The count is kept in the Store. Zero, the default, never
	// drops a message, as the specification asks [MQTT-4.4.0-1]; a QoS 2
	// message whose PUBREC came is never dropped.
	MaxAttempts int

	// OnDrop, if not nil, is told of every QoS 1 or 2 message the client
	// drops before its acknowledgement, with the reason: ErrExpired,
	// ErrTooManyAttempts or ErrDiscarded (all wrap ErrDropped). A Publish
	// still waiting for the message returns the same error. It runs on the
	// handler dispatcher, between handlers, in the order the messages were
	// accepted; m.Topic and m.Payload are the client's copy, which it no
	// longer uses and OnDrop may keep. A dropped message still counts
	// against MaxPending and MaxPendingBytes until its OnDrop call has
	// returned, so that a slow OnDrop holds up Publish instead of piling up
	// calls.
	OnDrop func(m Message, err error)

	// Store keeps the session's outbound QoS 1 and 2 messages and received
	// QoS 2 packet identifiers (see Store). Nil means none: the Client or
	// Session keeps its session in memory for as long as it lives. A
	// MemoryStore outlives it, for the next Client to resume from. With a
	// FileStore, a program that restarts with the same store, client
	// identifier and a persistent session sends again every message whose
	// Publish was accepted, and delivers no QoS 2 message twice. The client
	// does not close the Store.
	Store Store

	// InboxSize and InboxBytes bound the received messages waiting for
	// their handlers: their number, and their bytes (topic, payload and
	// about 160 bytes of bookkeeping each). When InboxSize messages wait,
	// the client stops reading from the network, so the server's flow
	// control and TCP apply back-pressure; a message is always taken when
	// none waits, whatever its size.
	//
	// One case cannot wait: a handler is running and one of the client's
	// own requests (a Publish at QoS 1 or 2, a Subscribe, an Unsubscribe)
	// awaits its acknowledgement on the connection. The handler may be
	// waiting for that acknowledgement, which may be behind the unread
	// messages. Then the client reads on, up to InboxBytes: beyond it, a
	// QoS 0 message is dropped (at most once delivery allows it;
	// Stats.InboundDropped counts them), and a QoS 1 or 2 message, which
	// the server sends again after a reconnect if it is not acknowledged,
	// waits for room. A server that keeps more than InboxBytes of QoS 1 and
	// 2 messages unacknowledged ahead of the acknowledgement a handler
	// waits for therefore holds that handler until its context ends;
	// brokers bound their unacknowledged messages per client (mosquitto and
	// VerneMQ: 20 by default), so keep InboxBytes above that many times
	// the largest message.
	//
	// Zero or negative means DefaultInboxSize (256) and DefaultInboxBytes
	// (1 MiB).
	InboxSize  int
	InboxBytes int

	// WriteBufferSize bounds the encoded packets waiting for the network,
	// in bytes: beyond it, everything that writes waits for the writer
	// (Publish within its context, acknowledgements by holding back
	// reading), so a server that stops reading meets back-pressure instead
	// of filling memory. One packet is always taken when none waits. Zero
	// or negative means DefaultWriteBufferSize (64 KiB).
	WriteBufferSize int

	// DefaultHandler receives messages that match no subscription's filter,
	// such as messages of a resumed session. Nil drops them (QoS 1 and 2
	// messages are still acknowledged [MQTT-4.5.0-2]; Stats.Unrouted counts
	// them).
	DefaultHandler Handler

	// Logger receives a Debug record for every control packet sent and
	// received, and Warn records for anomalies; Warn records caused by the
	// server (acknowledgements for identifiers not in flight, refused
	// subscriptions, dropped messages) are limited to a few per minute,
	// and Stats.LogsSuppressed counts the rest. Nil discards everything.
	Logger *slog.Logger
}

// Will is the will message of a connection (spec 3.1.2.5).
type Will struct {
	Topic   string // topic name; no wildcards [MQTT-3.1.3-10]
	Payload []byte // 0 to 65,535 bytes
	QoS     byte   // 0, 1 or 2 [MQTT-3.1.2-14]
	Retain  bool
}

// config is what a client keeps of its Options once connected: the
// bounds, with defaults filled in, and the parts it calls.
type config struct {
	clientID       string
	store          Store // nil when Options.Store is
	defaultHandler Handler
	onDrop         func(Message, error)
	log            *slog.Logger
	maxPendingB    int64
	keepAliveMS    int32 // as sent in CONNECT; 0 for off
	pingTimeoutMS  int32
	connectTimeout int32 // milliseconds
	maxPacket      int32
	maxInflight    int32
	maxPending     int32
	maxAttempts    int32
	inboxSize      int32
	inboxBytes     int32
	writeBuffer    int32
}

// normalize returns the config o describes, with defaults filled in, and
// its CONNECT. It returns an error wrapping ErrInvalidOptions for options
// that cannot make a valid CONNECT; nothing has been sent then.
func (o *Options) normalize() (config, *packet.Connect, error) {
	var n Options
	if o != nil {
		n = *o
	}
	if n.KeepAlive == 0 {
		n.KeepAlive = DefaultKeepAlive
	}
	if n.KeepAlive > 65535*time.Second {
		return config{}, nil, fmt.Errorf("%w: keep alive %v over 65535 s", ErrInvalidOptions, n.KeepAlive)
	}
	cfg := config{
		store:          n.Store,
		defaultHandler: n.DefaultHandler,
		onDrop:         n.OnDrop,
		log:            n.Logger,
		maxPacket:      int32(orDefault(n.MaxPacketSize, packet.DefaultMaxSize, packet.MaxPacketSize)),
		maxInflight:    int32(orDefault(n.MaxInflight, DefaultMaxInflight, 65535)),
		maxPending:     int32(orDefault(n.MaxPending, DefaultMaxPending, 65535)),
		maxPendingB:    int64(orDefault(n.MaxPendingBytes, DefaultMaxPendingBytes, math.MaxInt)),
		maxAttempts:    int32(orDefault(n.MaxAttempts, 0, 1<<30)),
		inboxSize:      int32(orDefault(n.InboxSize, DefaultInboxSize, 1<<30)),
		inboxBytes:     int32(orDefault(n.InboxBytes, DefaultInboxBytes, 1<<30)),
		writeBuffer:    int32(orDefault(n.WriteBufferSize, DefaultWriteBufferSize, 1<<30)),
	}
	if n.PingTimeout <= 0 {
		// Half of the interval used, which is rounded up to seconds.
		ka := (n.KeepAlive + time.Second - 1) / time.Second * time.Second
		n.PingTimeout = min(max(ka/2, time.Second), DefaultPingTimeout)
	}
	if n.ConnectTimeout <= 0 {
		n.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.pingTimeoutMS = millis(n.PingTimeout)
	cfg.connectTimeout = millis(n.ConnectTimeout)
	if cfg.log == nil {
		cfg.log = discard
	}
	if n.ClientID == "" {
		if n.PersistentSession {
			return config{}, nil, fmt.Errorf("%w: a persistent session needs a ClientID: one generated at random could never be resumed", ErrInvalidOptions)
		}
		n.ClientID = generateClientID()
	}
	cfg.clientID = n.ClientID
	c := &packet.Connect{
		ProtocolLevel: n.ProtocolLevel,
		CleanSession:  !n.PersistentSession,
		ClientID:      []byte(n.ClientID),
	}
	if n.KeepAlive > 0 {
		c.KeepAlive = uint16((n.KeepAlive + time.Second - 1) / time.Second)
		cfg.keepAliveMS = int32(c.KeepAlive) * 1000
	}
	if n.Username != "" {
		c.UsernameFlag, c.Username = true, []byte(n.Username)
		if n.Password != nil {
			c.PasswordFlag, c.Password = true, n.Password
		}
	} else if len(n.Password) > 0 {
		return config{}, nil, fmt.Errorf("%w: a password needs a user name [MQTT-3.1.2-22]", ErrInvalidOptions)
	}
	if w := n.Will; w != nil {
		c.WillFlag, c.WillQoS, c.WillRetain = true, w.QoS, w.Retain
		c.WillTopic, c.WillMessage = []byte(w.Topic), w.Payload
		if c.WillMessage == nil {
			c.WillMessage = []byte{}
		}
	}
	if err := checkConnect(c, int(cfg.maxPacket)); err != nil {
		return config{}, nil, err
	}
	return cfg, c, nil
}

// millis returns d in whole milliseconds, at least 1, at most 2^31-1 (24
// days).
func millis(d time.Duration) int32 {
	return int32(min(max(d/time.Millisecond, 1), math.MaxInt32))
}

func (c *config) keepAlive() time.Duration { return time.Duration(c.keepAliveMS) * time.Millisecond }
func (c *config) pingTimeout() time.Duration {
	return time.Duration(c.pingTimeoutMS) * time.Millisecond
}
func (c *config) dialTimeout() time.Duration {
	return time.Duration(c.connectTimeout) * time.Millisecond
}

// orDefault returns v, or def when v is zero or negative, and at most
// limit.
func orDefault(v, def, limit int) int {
	if v <= 0 {
		v = def
	}
	return min(v, limit)
}

// checkConnect returns an error wrapping ErrInvalidOptions when c is not a
// valid CONNECT or is larger than limit bytes.
func checkConnect(c *packet.Connect, limit int) error {
	if _, err := c.AppendTo(nil); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if n := c.Size(); n > limit {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, tooLarge(packet.CONNECT, n, limit))
	}
	return nil
}

// tooLarge is the error for a packet of n bytes over the limit of
// Options.MaxPacketSize.
func tooLarge(t packet.Type, n, limit int) error {
	return &packet.Error{Type: t, Reason: strconv.Itoa(n) + " bytes, over Options.MaxPacketSize of " + strconv.Itoa(limit), Err: packet.ErrPacketTooLarge}
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

// String formats o with Password redacted, as every fmt verb (%v, %+v, %s,
// %q; %#v through GoString) and slog (LogValue) show it: secrets never
// print. Pointers (Store, Logger, Will) show as addresses.
func (o Options) String() string { return redact.Struct(o, hideOptions) }

// GoString is String, for %#v.
func (o Options) GoString() string { return o.String() }

// LogValue implements slog.LogValuer with String's text.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

func hideOptions(field string, v reflect.Value) (string, bool) {
	if field == "Password" {
		return redact.Secret(v), true
	}
	return "", false
}
