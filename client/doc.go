// Package client is an MQTT 3.1.1 client. A Client is one network
// connection: its CONNECT/CONNACK handshake, keep alive, publishing and
// receiving at QoS 0, 1 and 2, subscriptions with per-filter handlers, and
// DISCONNECT. A Session keeps an MQTT session across connections: it
// reconnects with backoff, re-sends what was not acknowledged, makes
// subscriptions again when the server has lost them, and with a FileStore
// survives a restart of the program.
//
// Dial and NewSession take any netx.Dialer (netx.URL turns a broker URL
// into one). Every blocking method takes a context.Context and returns when
// it ends. Clients and Sessions are safe for concurrent use.
//
// # Goroutines
//
// Each connection runs a reader, which owns the packet decoder, and a
// writer, which owns every write to the network connection (PINGREQ
// included); a handler dispatcher runs message handlers in arrival order,
// so a slow handler never stalls acknowledgements or keep alive. A Session
// adds one supervisor goroutine. Received messages wait for the dispatcher
// in a bounded inbox (Options.InboxSize); QoS 1 and 2 messages wait for a
// place in a bounded in-flight window (Options.MaxInflight), and for
// acceptance among a bounded number of pending messages
// (Options.MaxPending).
//
// # Writes
//
// Packets are encoded into a buffer that the writer swaps out and writes
// whenever it is free: a lone packet goes out at once, and under load
// small packets coalesce into large writes without any timer. When more
// than 256 KiB wait to be written, QoS 0 senders wait for the writer
// (back-pressure).
//
// # Delivery
//
// A QoS 1 or 2 message accepted by Publish gets a packet identifier and a
// record in the Store before it is sent; the record goes when the last
// acknowledgement comes. Re-sends keep the identifier and carry DUP, in
// acceptance order. A received QoS 2 message is delivered once: its
// identifier is recorded before the PUBREC and forgotten before the
// PUBCOMP. A received QoS 1 or 2 message is acknowledged after its handler
// returns.
//
// # Errors
//
// Errors wrap sentinels for errors.Is: ErrNotSent (nothing was sent; a
// retry is safe), ErrNotConnected, ErrClosed (the client was closed),
// ErrConnectionLost (the connection ended before the acknowledgement came;
// the outcome is unknown), ErrPingTimeout, ErrProtocolViolation,
// ErrSubscriptionFailed, and *ConnackError for a server's refusal, which
// errors.Is matches against ErrBadUsernameOrPassword and its siblings.
// Malformed packets from the server surface as *packet.Error wrapping
// packet.ErrMalformed.
//
// # Logging
//
// With Options.Logger set, every control packet sent and received is logged
// at slog.LevelDebug, with its type, flags, packet identifier, topic and
// payload size; passwords are never logged. A packet sent is logged when it
// is queued for the writer, in the order it will be written. Nothing is
// built for the log when the level is disabled.
package client
