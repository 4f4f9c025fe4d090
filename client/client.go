package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemq/mqtt/netx"
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
}

// A Handler processes received messages. Handlers run one at a time, on the
// client's dispatcher goroutine, in the order the messages arrived; a QoS 1
// or 2 message is acknowledged after its handler returns, so a crash in a
// handler means redelivery, not loss. While a handler runs, later messages
// wait in the inbox (Options.InboxSize); acknowledgements for the client's
// own requests and keep alive are not held up.
//
// A handler may call any method of the client, including Publish at QoS 1
// or 2 (which waits for its acknowledgement) and Disconnect. A panic in a
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
	// Handler receives the messages whose topic matches Filter. With several
	// matching subscriptions, each of their handlers runs, once. Nil sends
	// matching messages to Options.DefaultHandler.
	Handler Handler
}

// A Client is one connection to an MQTT server, made by Dial: it does not
// reconnect (see Session for that). It is safe for concurrent use. It ends
// when Disconnect or Close is called or the connection fails; Done and Err
// tell when and why.
//
// Its goroutines are the connection's reader and writer and the handler
// dispatcher.
type Client struct {
	core *core
	cn   *conn
	done chan struct{} // closed when every goroutine has exited
	left atomic.Int32
	stop sync.Once
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
func Dial(ctx context.Context, d netx.Dialer, opts *Options) (*Client, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil dialer", ErrInvalidOptions)
	}
	o, connect, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	c, err := newCore(o, true)
	if err != nil {
		return nil, err
	}
	cn, err := dialConn(ctx, c, d, connect)
	if err != nil {
		return nil, err
	}
	cl := &Client{core: c, cn: cn, done: make(chan struct{})}
	c.attach(cn, cn.sessionPresent)
	cl.left.Store(2)
	cn.onDone = func() {
		c.close(cn.err)
		c.inbox.end()
		cl.exit()
	}
	cn.start()
	go func() {
		c.dispatch()
		cl.exit()
	}()
	return cl, nil
}

func (cl *Client) exit() {
	if cl.left.Add(-1) == 0 {
		close(cl.done)
	}
}

// ClientID returns the client identifier sent in CONNECT, generated when
// Options.ClientID was empty.
func (cl *Client) ClientID() string { return cl.core.opts.ClientID }

// SessionPresent returns the session present flag of the CONNACK: true when
// the server resumed a session stored under the client identifier
// (spec 3.2.2.2).
func (cl *Client) SessionPresent() bool { return cl.cn.sessionPresent }

// Done returns a channel that is closed when the connection has ended and
// all of the client's goroutines have exited, a running handler included.
func (cl *Client) Done() <-chan struct{} { return cl.done }

// Err returns nil while the connection is up, and afterwards why it ended:
// ErrClosed after Disconnect or Close, otherwise the failure (an error
// saying "connection lost", ErrPingTimeout, a *packet.Error,
// ErrProtocolViolation).
func (cl *Client) Err() error {
	cl.core.mu.Lock()
	defer cl.core.mu.Unlock()
	return cl.core.err
}

// Stats returns the client's counters.
func (cl *Client) Stats() Stats { return cl.core.snapshot() }

// Publish sends m. At QoS 0 it returns once m is queued for the writer; at
// QoS 1 it waits for PUBACK, at QoS 2 for PUBCOMP (spec 4.3). A QoS 1 or 2
// message is first accepted, waiting for room among the pending messages
// (Options.MaxPending): it gets a packet identifier [MQTT-2.3.1-2] and goes
// into the Store; then it is sent when the in-flight window
// (Options.MaxInflight) has room.
//
// Errors that wrap ErrNotSent mean nothing was sent and a retry is safe:
// ctx ending before the message was accepted, or the client closed (these
// wrap ErrClosed too). Errors wrapping packet.ErrInvalid mean the message
// breaks a rule (a topic name with wildcards [MQTT-3.3.2-2], empty
// [MQTT-4.7.3-1] or not UTF-8, QoS 3), and errors wrapping
// packet.ErrPacketTooLarge that the PUBLISH would be larger than
// Options.MaxPacketSize: nothing was sent either. Once accepted: an error
// wrapping ctx.Err() when ctx ends first (the message may still be
// delivered, and its packet identifier stays in use until the server
// acknowledges it); when the connection ends before the acknowledgement,
// ErrConnectionLost if the message was written or is kept by a Store (the
// outcome is unknown; a Store keeps it for the next client using it to
// send again), or ErrNotSent if it was never written and no Store keeps
// it: then it is the caller's again.
//
// Publish does not retain m.Payload after it returns. At QoS 0 with a warm
// client it allocates nothing.
func (cl *Client) Publish(ctx context.Context, m Message) error { return cl.core.publish(ctx, m) }

// Subscribe sends one SUBSCRIBE with subs and waits for its SUBACK (spec 3.8,
// 3.9). It returns the return codes, one per subscription in order: the
// granted QoS, or packet.SubackFailure. The handlers of granted
// subscriptions are installed before any later packet is read, so retained
// messages sent right after the SUBACK reach them.
//
// Errors: an error wrapping packet.ErrInvalid, before anything is sent, for
// no subscriptions or an invalid filter (spec 4.7) or QoS; an error wrapping
// ErrSubscriptionFailed, together with the codes, when the server refused
// some filters; otherwise as for Publish. When ctx ends after the SUBSCRIBE
// was sent, the subscription may still take effect, handler included.
func (cl *Client) Subscribe(ctx context.Context, subs ...Subscription) ([]packet.SubackCode, error) {
	return cl.core.subscribe(ctx, subs)
}

// Unsubscribe sends one UNSUBSCRIBE with filters and waits for its UNSUBACK
// (spec 3.10, 3.11). The filters' handlers are removed when the UNSUBACK
// arrives; messages the server had already sent still reach them
// [MQTT-3.10.4-3]. Errors are as for Subscribe.
func (cl *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	return cl.core.unsubscribe(ctx, filters)
}

// Disconnect sends DISCONNECT after every packet already queued, closes the
// network connection [MQTT-3.14.4-1] and waits for the reader and writer
// goroutines to exit. Nothing is sent after DISCONNECT [MQTT-3.14.4-2], and
// the server discards the will [MQTT-3.14.4-3]. Requests still waiting for
// acknowledgements fail with ErrConnectionLost, except messages never
// written and kept by no Store, which fail with ErrNotSent (see Publish).
// Publish calls waiting for room (Options.MaxPending) or a packet
// identifier return errors wrapping ErrNotSent and ErrClosed. Messages received and not
// yet handled are dropped (the server re-sends unacknowledged QoS 1 and 2
// messages of a persistent session), and no handler starts after Disconnect
// returns; a handler already running may still be, so that handlers may
// call Disconnect themselves. Done tells when it has returned.
//
// When ctx ends first, the connection is closed at once and the error wraps
// ctx.Err(). Disconnect is idempotent and safe to call concurrently with
// anything, a connection loss included; after the connection has ended it
// returns nil.
func (cl *Client) Disconnect(ctx context.Context) error {
	defer cl.stop.Do(cl.core.inbox.stop)
	cl.cn.disconnect()
	select {
	case <-cl.cn.done:
		return nil
	case <-ctx.Done():
		cl.cn.shutdown(ErrClosed)
		<-cl.cn.done // the connection is closed: the reader and writer end at once
		return fmt.Errorf("mqtt: disconnect: %w", ctx.Err())
	}
}

// Close disconnects like Disconnect, waiting at most one second for
// DISCONNECT to be written. It is idempotent.
func (cl *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return cl.Disconnect(ctx)
}
