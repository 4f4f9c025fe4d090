// Package client is an MQTT 3.1.1 client. A Client is one network
// connection: its CONNECT/CONNACK handshake, keep alive, publishing and
// receiving at QoS 0, 1 and 2, subscriptions with per-filter handlers, and
// DISCONNECT. A Session keeps an MQTT session across connections: it
// reconnects with backoff, re-sends what was not acknowledged, makes
// subscriptions again when the server has lost them, and with a FileStore
// survives a restart of the program.
//
// Dial and NewSession take any Dialer: every dialer of package netx is one
// (netx.URL turns a broker URL into one), and so is any type with a
// Dial(ctx) (net.Conn, error) method. Every blocking method takes a
// context.Context and returns when it ends. Clients and Sessions are safe
// for concurrent use.
//
// # Goroutines
//
// Each connection runs a reader, which owns the packet decoder and runs
// keep alive on its read deadline (no timer). Writes have a single writer
// at a time: a sender whose packet finds no write under way and nothing
// else in flight writes it itself; otherwise a writer goroutine, which runs
// only while there is something to write, takes everything queued in one
// write. Handlers run one at a time on a dispatcher goroutine, which runs
// only while there are messages; a Session's callbacks (OnConnect and the
// others) run likewise on a goroutine of their own. An idle Client thus
// runs one goroutine; an idle Session two (it adds its supervisor).
//
// # Bounds
//
// Every buffer and queue has a bound that holds whatever the server does
// (sends without pause, stops reading, stalls, floods acknowledgements):
//
//   - write buffer: Options.WriteBufferSize bytes of encoded packets, plus
//     one packet. Acknowledgements the client owes wait for room like
//     everything else, so a server that stops reading stops being read
//     (back-pressure) instead of filling memory; a write blocked for
//     KeepAlive + PingTimeout ends the connection.
//   - inbox: Options.InboxSize messages and InboxBytes bytes waiting for
//     handlers; when full, the client stops reading. The one exception,
//     a handler that may wait for an acknowledgement behind the unread
//     data, is bounded by InboxBytes alone (see Options.InboxSize).
//   - pending: Options.MaxPending messages and MaxPendingBytes bytes
//     accepted by Publish and not yet completed; the in-flight window,
//     Options.MaxInflight of them on the wire.
//   - received QoS 2 packet identifiers: a small set, made with the first
//     QoS 2 message, which becomes a bitmap of 8 KiB beyond 256 of them.
//   - packet identifiers in use: at most 65,535.
//   - log records about the server's behaviour: a few per minute (Stats
//     counts the rest).
//
// Adding these up, with P = Options.MaxPacketSize, W = WriteBufferSize, I =
// InboxBytes and B = MaxPendingBytes, a client holds at most about
//
//	2(W + P)          the write buffer being filled and the one being written
//	+ P + 32 KiB      the decoder's buffer: the packet being read, or read-ahead
//	+ 2I + 2P         the inbox (messages and queue), the message a handler has,
//	                  the one the reader holds while it waits for room
//	+ B + 650 B × MaxPending   pending messages and their bookkeeping
//	+ 400 B × MaxInflight      dropped messages still on the wire (their
//	                           identifiers await the acknowledgement)
//	+ 8 KiB + 2 KiB   received QoS 2 identifiers; the client itself
//
// bytes of heap beyond what the caller's handlers keep: with the defaults
// (P 1 MiB, W 64 KiB, I 1 MiB, B 16 MiB, MaxPending 1000) about 24 MiB at
// worst, a few hundred bytes when idle. For a constrained gateway, lower P
// to what its subscriptions carry (IoT Hub: 16 KiB) and B and I to taste:
// with P 16 KiB, W 16 KiB, I 256 KiB, B 1 MiB and MaxPending 100, under 2
// MiB. The tests measure the heap of a client under each kind of flood and
// check it against this sum.
//
// # Delivery
//
// A QoS 1 or 2 message accepted by Publish gets a packet identifier and a
// record in the Store before it is sent; the record goes when the last
// acknowledgement comes. Re-sends on a resumed session keep the identifier
// and carry DUP, in acceptance order; on a new session (session present 0)
// messages go out as new ones, without DUP. A received QoS 2 message is
// delivered once: its identifier is recorded before the PUBREC and
// forgotten before the PUBCOMP. A received QoS 1 or 2 message is
// acknowledged after its handler returns.
//
// A message that the server refuses by closing the connection each time it
// is sent would be sent first on every connection for ever; MaxAttempts,
// Message.Expires and Discard drop such messages, and OnDrop reports every
// drop with its reason.
//
// # Errors
//
// Errors wrap sentinels for errors.Is: ErrNotSent (nothing was sent and the
// client keeps nothing: a retry is safe), ErrPending (accepted and still
// being sent: do not retry), ErrConnectionLost (the connection ended before
// the acknowledgement; the outcome is unknown), ErrDropped and its kinds,
// ErrNotConnected, ErrClosed, ErrPingTimeout, ErrProtocolViolation,
// ErrSubscriptionFailed, ErrInvalidOptions, and *ConnackError for a
// server's refusal, which errors.Is matches against ErrBadUsernameOrPassword
// and its siblings. Malformed packets from the server surface as
// *packet.Error wrapping packet.ErrMalformed.
//
// # Logging
//
// With Options.Logger set, every control packet sent and received is logged
// at slog.LevelDebug, with its type, flags, packet identifier, topic and
// payload size; passwords are never logged. A packet sent is logged when it
// is queued for the writer, in the order it will be written. Nothing is
// built for the log when the level is disabled. Warn records caused by the
// server are rate limited.
package client
