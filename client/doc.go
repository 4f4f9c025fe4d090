// Package client is an MQTT 3.1.1 client: one network connection, its
// CONNECT/CONNACK handshake, keep alive, publishing and receiving at QoS 0,
// 1 and 2, subscriptions with per-filter handlers, and DISCONNECT.
//
// Dial opens a connection over any netx.Dialer and returns a connected
// *Client. Every blocking method takes a context.Context and returns when it
// ends. A Client is safe for concurrent use by multiple goroutines.
//
// Each connection runs three goroutines: a reader that owns the packet
// decoder, a writer that owns every write to the network connection (PINGREQ
// included) and a dispatcher that runs message handlers in arrival order, so
// a slow handler never stalls acknowledgements or keep alive. Received
// messages wait for the dispatcher in a bounded inbox (Options.InboxSize);
// QoS 1 and 2 PUBLISHes wait for room in a bounded in-flight window
// (Options.MaxInflight).
//
// A Client is one connection: it does not reconnect, and with clean session
// 0 the server keeps the session but this client keeps none of its own
// state across connections.
//
// # Writes
//
// Packets are encoded into a shared buffer that the writer swaps out and
// writes whenever it is free: a lone packet goes out at once, and under load
// small packets coalesce into large writes without any timer. When more than
// 256 KiB wait to be written, senders wait for the writer (back-pressure).
//
// # Errors
//
// Errors wrap sentinels for errors.Is: ErrNotSent (nothing was sent; a
// retry is safe), ErrClosed (the client was closed), ErrConnectionLost (the
// connection ended before the acknowledgement came; the outcome is
// unknown), ErrPingTimeout, ErrProtocolViolation, ErrSubscriptionFailed,
// and *ConnackError for a server's refusal, which errors.Is matches against
// ErrBadUsernameOrPassword and its siblings. Malformed packets from the
// server surface as *packet.Error wrapping packet.ErrMalformed.
//
// # Logging
//
// With Options.Logger set, every control packet sent and received is logged
// at slog.LevelDebug, with its type, flags, packet identifier, topic and
// payload size; passwords are never logged. A packet sent is logged when it
// is queued for the writer, in the order it will be written. Nothing is
// built for the log when the level is disabled.
package client
