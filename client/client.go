package client

import (
	"context"
	"fmt"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Message is an application message, sent by Publish or received by a
// Handler (spec 3.3).
type Message struct {
	// Topic is the topic name: at least one character, no wildcards
	// [MQTT-3.3.2-2], UTF-8 without U+0000 [MQTT-1.5.3-2].
	Topic string
	// Payload is the application message, 0 or more bytes (spec 3.3.3). A
	// received payload belongs to the handler, which may keep it.
	Payload []byte
	// QoS is the delivery guarantee, 0, 1 or 2 (spec 4.3).
	QoS byte
	// Retain asks the server to keep the message for future subscribers; on
	// a received message it marks a retained one sent because a
	// subscription was just made [MQTT-3.3.1-8].
	Retain bool
	// Duplicate is the DUP flag of a received message: the server may have
	// sent it before [MQTT-3.3.1-1]. It is ignored by Publish.
	Duplicate bool
	// Expires, when not zero, is when a QoS 1 or 2 message stops being
	// worth sending: one that has not gone out (or must go out again
	// after a reconnect) by then is dropped with ErrExpired (see
	// Options.OnDrop), and Publish refuses one already past with
	// ErrNotSent (wrapping ErrExpired too, without an OnDrop call: test
	// ErrNotSent first). The client looks when the message's turn to be written
	// comes, so a Session offline drops it, and tells its waiter, at the
	// next connection. It is kept in the Store. MQTT 3.1.1 carries no
	// expiry: the server never sees it, and it is zero on received
	// messages.
	Expires time.Time
}

// A Handler processes received messages. Handlers run one at a time, on the
// client's dispatcher goroutine, in the order the messages arrived; a QoS 1
// or 2 message is acknowledged after its handler returns, so a crash in a
// handler means redelivery, not loss. While a handler runs, later messages
// wait in the inbox (Options.InboxSize and InboxBytes).
//
// A handler may call any method of the client, including Publish at QoS 1
// or 2 (which waits for its acknowledgement; see Options.InboxSize for the
// bound on what the client reads meanwhile) and Disconnect. A panic in a
// handler is not recovered: like a panic in any goroutine, it ends the
// program.
type Handler func(m Message)

// Subscription is a topic filter to subscribe to (spec 3.8.3).
type Subscription struct {
	// Filter is the topic filter (spec 4.7); wildcards "+" and "#" allowed.
	// A shared subscription "$share/{group}/{filter}", which some brokers
	// accept, routes the messages matching {filter} to Handler.
	Filter string
	// QoS is the maximum QoS requested: 0, 1 or 2.
	QoS byte
	// Handler receives the messages whose topic matches Filter, from the
	// moment the SUBSCRIBE is written (a server may send messages before
	// its SUBACK, spec 3.8.4) until the UNSUBACK of an Unsubscribe, or the
	// server's refusal of the filter. With several matching subscriptions,
	// each of their handlers runs, once. Nil sends matching messages to
	// Options.DefaultHandler.
	Handler Handler
}

// A Client is one connection to an MQTT server, made by Dial: it does not
// reconnect (see Session for that). It is safe for concurrent use. It ends
// when Disconnect or Close is called or the connection fails; Done and Err
// tell when and why.
//
// An idle Client runs one goroutine, the connection's reader; a writer and
// a handler dispatcher run while there is something to write or to handle.
type Client struct {
	c  core
	cn *conn
}

// Dial connects to an MQTT server through d: it opens the network
// connection, sends CONNECT built from opts (nil means zero Options) and
// waits for CONNACK, all within ctx and Options.ConnectTimeout. With a
// Store holding messages of an earlier client, they are sent again once
// connected (see Options.Store).
//
// Errors: ErrInvalidOptions before anything is dialled; a *ConnackError
// when the server refuses the connection (errors.Is matches
// ErrBadUsernameOrPassword and its siblings); an error wrapping ctx.Err() or
// context.DeadlineExceeded, naming the stage (dial, CONNECT, CONNACK), when
// time runs out; a *packet.Error for an answer that is not MQTT;
// ErrProtocolViolation when the first packet is not CONNACK [MQTT-3.2.0-1].
// On error the network connection is closed and no goroutine is left.
func Dial(ctx context.Context, d Dialer, opts *Options) (*Client, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil dialer", ErrInvalidOptions)
	}
	cfg, connect, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	cl := &Client{}
	if err := cl.c.init(cfg, true); err != nil {
		return nil, err
	}
	cn, err := dialConn(ctx, &cl.c, d, connect, cfg.dialTimeout(), nil)
	if err != nil {
		return nil, err
	}
	cl.cn = cn
	cl.c.connected()
	if !cn.sessionPresent {
		cl.c.forgetIn2()
	}
	cl.c.apply(cl.c.out.attach(cn, cn.sessionPresent, nil))
	cn.start()
	cl.c.apply(cl.c.out.resumeAfterAttach(nil))
	cn.flush()
	return cl, nil
}

// ClientID returns the client identifier sent in CONNECT, generated when
// Options.ClientID was empty.
func (cl *Client) ClientID() string { return cl.c.cfg.clientID }

// SessionPresent returns the session present flag of the CONNACK: true when
// the server resumed a session stored under the client identifier
// (spec 3.2.2.2).
func (cl *Client) SessionPresent() bool { return cl.cn.sessionPresent }

// Done returns a channel that is closed when the connection has ended and
// all of the client's goroutines are done, a running handler and OnDrop
// calls included, as are Publish and Discard calls still completing what
// they decided (their Store calls and OnDrop calls): after it, the client
// calls neither the Store nor OnDrop.
func (cl *Client) Done() <-chan struct{} { return cl.c.done.wait() }

// Err returns nil while the connection is up, and afterwards why it ended:
// ErrClosed after Disconnect or Close, otherwise the failure (an error
// saying "connection lost", ErrPingTimeout, a *packet.Error,
// ErrProtocolViolation).
func (cl *Client) Err() error {
	return cl.cn.error()
}

// State returns StateConnected until the connection ends, then
// StateClosed.
func (cl *Client) State() State {
	if cl.cn.isClosed() {
		return StateClosed
	}
	return StateConnected
}

// Stats returns the client's counters.
func (cl *Client) Stats() Stats { return cl.c.snapshot() }

// Publish sends m. At QoS 0 it returns once m is queued for the writer; at
// QoS 1 it waits for PUBACK, at QoS 2 for PUBCOMP (spec 4.3). A QoS 1 or 2
// message is first accepted, waiting for room among the pending messages
// (Options.MaxPending, MaxPendingBytes): it gets a packet identifier
// [MQTT-2.3.1-2] and goes into the Store; then it is sent when the
// in-flight window (Options.MaxInflight) has room.
//
// Errors say what became of the message:
//   - ErrNotSent: nothing of it reached the server and the client keeps
//     nothing of it; a retry is safe. So it is when ctx ends before the
//     message was accepted, or after but before it was ever written (it is
//     withdrawn, from the Store too), and when the client is closed (these
//     wrap ErrClosed too) or its connection ends before the message was
//     written and no Store keeps it.
//   - ErrPending: the message stays accepted and the client goes on
//     sending it: ctx ended after it was written (the error wraps ctx.Err()
//     too), or the connection ended and a Store keeps it for the next
//     client that uses it (the error wraps ErrConnectionLost too when it
//     was written). Do not publish it again.
//   - ErrConnectionLost alone: it was written, the connection ended before
//     its acknowledgement, and no Store keeps it: the outcome is unknown.
//   - ErrDropped (ErrExpired, ErrTooManyAttempts, ErrDiscarded): the client
//     gave up on it (see Options.OnDrop).
//   - packet.ErrInvalid: the message breaks a rule (a topic name with
//     wildcards [MQTT-3.3.2-2], empty [MQTT-4.7.3-1] or not UTF-8, QoS 3);
//     packet.ErrPacketTooLarge: the PUBLISH would be larger than
//     Options.MaxPacketSize. Nothing was sent.
//
// Publish does not retain m.Payload after it returns. At QoS 0 with a warm
// client it allocates nothing.
func (cl *Client) Publish(ctx context.Context, m Message) error { return cl.c.publish(ctx, m, true) }

// Subscribe sends one SUBSCRIBE with subs and waits for its SUBACK (spec 3.8,
// 3.9). It returns the return codes, one per subscription in order: the
// granted QoS, or packet.SubackFailure. The handlers are installed before
// the SUBSCRIBE is written, so messages the server sends before its SUBACK
// (retained messages, often) reach them; a filter the server refuses loses
// its handler.
//
// Errors: an error wrapping packet.ErrInvalid, before anything is sent, for
// no subscriptions or an invalid filter (spec 4.7) or QoS; an error wrapping
// ErrSubscriptionFailed, together with the codes, when the server refused
// some filters; ErrNotSent when nothing was sent; ErrConnectionLost when
// the connection ended before the SUBACK (the subscription may have been
// made; the handlers stay installed). When ctx ends after the SUBSCRIBE was
// sent, the subscription may still take effect, handler included.
func (cl *Client) Subscribe(ctx context.Context, subs ...Subscription) ([]packet.SubackCode, error) {
	return cl.c.subscribe(ctx, subs)
}

// Unsubscribe sends one UNSUBSCRIBE with filters and waits for its UNSUBACK
// (spec 3.10, 3.11). The filters' handlers are removed when the UNSUBACK
// arrives; messages read before it still reach them [MQTT-3.10.4-3], later
// ones go to Options.DefaultHandler. Errors are as for Subscribe.
func (cl *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	return cl.c.unsubscribe(ctx, filters)
}

// Discard drops the pending QoS 1 and 2 messages (accepted, not yet
// acknowledged) for which match returns true, and returns how many. Each is
// reported to Options.OnDrop with ErrDiscarded, and a Publish waiting for
// it returns that error. A QoS 2 message whose PUBREC came is the server's
// and is not offered to match. A discarded message that was written may
// still reach subscribers; its packet identifier stays taken until the
// server acknowledges it or the connection ends. match runs with the
// client's outbox locked: it must not call the client. Once Done is
// closed, Discard returns 0 and leaves the Store alone: messages a Store
// keeps are discarded by the next client on it.
func (cl *Client) Discard(match func(Message) bool) int { return cl.c.discard(match) }

// Disconnect sends DISCONNECT after every packet already queued, closes the
// network connection [MQTT-3.14.4-1] and waits for the reader and writer
// goroutines to exit. Nothing is sent after DISCONNECT [MQTT-3.14.4-2], and
// the server discards the will [MQTT-3.14.4-3]. Requests still waiting for
// acknowledgements end as Publish describes: ErrPending for messages a
// Store keeps, ErrConnectionLost for others written, ErrNotSent (and
// ErrClosed) for others never written and for calls waiting for room or a
// packet identifier. Messages received and not yet handled are dropped (the
// server re-sends unacknowledged QoS 1 and 2 messages of a persistent
// session), and no handler starts after Disconnect returns; a handler
// already running may still be, so that handlers may call Disconnect
// themselves, and OnDrop calls already due still run. Done tells when they
// have returned.
//
// When ctx ends first, the connection is closed at once and the error wraps
// ctx.Err(). Disconnect is idempotent and safe to call concurrently with
// anything, a connection loss included; after the connection has ended it
// returns nil. Once Done is closed, the client calls its Store no more: a
// handler still running when Disconnect returns may yet record its QoS 2
// message's packet identifier, as exactly-once delivery needs
// [MQTT-4.3.3-2]. Wait for Done before closing the Store.
func (cl *Client) Disconnect(ctx context.Context) error {
	defer cl.c.stopInbox()
	cl.cn.disconnect()
	if cl.cn.waitDone(ctx.Done()) {
		return nil
	}
	cl.cn.shutdown(ErrClosed)
	cl.cn.waitDone(nil) // the connection is closed: the reader and writer end at once
	return fmt.Errorf("mqtt: disconnect: %w", ctx.Err())
}

// Close disconnects like Disconnect, waiting at most one second for
// DISCONNECT to be written. It is idempotent.
func (cl *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return cl.Disconnect(ctx)
}
