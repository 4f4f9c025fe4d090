package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
	"golang.org/x/sync/semaphore"
)

// aLongTimeAgo is a deadline in the past, set to unblock I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

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

// A Client is one connection to an MQTT server, made by Dial. It is safe for
// concurrent use. It ends when Disconnect or Close is called or the
// connection fails; Done and Err tell when and why. It does not reconnect.
type Client struct {
	opts           Options
	conn           net.Conn
	dec            *packet.Decoder // owned by the reader goroutine after Dial
	log            *slog.Logger
	epoch          time.Time // monotonic base of the nanotime stamps below
	keepAlive      time.Duration
	sessionPresent bool
	window         *semaphore.Weighted // QoS 1 and 2 PUBLISHes in flight, at most Options.MaxInflight
	inbox          *inbox

	// Lock order: never hold mu and wmu at the same time; inbox.mu may be
	// taken with neither held only.

	wmu      sync.Mutex    // guards the fields below
	wbuf     []byte        // encoded packets waiting for the writer
	wflushed chan struct{} // closed after the writer's next write; nil if nobody waits
	wclosing bool          // DISCONNECT is queued: nothing more is accepted [MQTT-3.14.4-2]
	wdead    bool          // the connection has ended
	wake     chan struct{} // capacity 1: wakes the writer
	lastSent atomic.Int64  // nanotime of the last write
	lastRecv atomic.Int64  // nanotime of the last packet read
	pingSent atomic.Int64  // nanotime of the unanswered PINGREQ; 0 if none

	mu       sync.Mutex          // guards the fields below
	nextID   uint16              // last packet identifier handed out
	inflight map[uint16]*request // requests waiting for their acknowledgement, by packet identifier
	idFreed  chan struct{}       // closed when an identifier is freed; nil if nobody waits
	routes   []route             // subscriptions with handlers, in subscription order
	qos2In   map[uint16]struct{} // received QoS 2 identifiers waiting for PUBREL [MQTT-4.3.3-2]
	dead     bool                // the connection has ended
	err      error               // why it ended

	closing   chan struct{} // closed when the connection ends
	netDone   chan struct{} // closed when the reader and the writer have exited
	done      chan struct{} // closed when every goroutine has exited
	netLeft   atomic.Int32  // reader and writer still running
	left      atomic.Int32  // goroutines still running
	closeOnce sync.Once
}

// request is a packet waiting for its acknowledgement.
type request struct {
	id       uint16
	kind     packet.Type // PUBLISH, SUBSCRIBE or UNSUBSCRIBE
	qos      byte        // PUBLISH: 1 or 2
	released bool        // QoS 2: PUBREC came and PUBREL was sent; waiting for PUBCOMP
	subs     []Subscription
	filters  []string
	codes    []packet.SubackCode
	err      error
	done     chan struct{} // closed, under mu, when err and codes are final
}

// Dial connects to an MQTT server through d: it opens the network
// connection, sends CONNECT built from opts (nil means zero Options) and
// waits for CONNACK, all within ctx and Options.ConnectTimeout.
//
// Errors: ErrInvalidOptions before anything is dialled; a *ConnackError
// when the server refuses the connection (errors.Is matches
// ErrBadUsernameOrPassword and its siblings); an error wrapping ctx.Err() or
// context.DeadlineExceeded, naming the stage (dial, CONNECT, CONNACK), when
// time runs out; a *packet.Error for an answer that is not MQTT;
// ErrProtocolViolation when the first packet is not CONNACK [MQTT-3.2.0-1].
// On error the network connection is closed and no goroutine is left.
func Dial(ctx context.Context, d netx.Dialer, opts *Options) (*Client, error) {
	o, connect, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("mqtt: connect: dial: %w", err)
	}
	c := &Client{
		opts:     o,
		conn:     conn,
		dec:      packet.NewDecoder(conn, o.MaxPacketSize),
		log:      o.Logger,
		epoch:    time.Now(),
		window:   semaphore.NewWeighted(int64(o.MaxInflight)),
		inbox:    newInbox(o.InboxSize),
		wake:     make(chan struct{}, 1),
		inflight: make(map[uint16]*request),
		qos2In:   make(map[uint16]struct{}),
		closing:  make(chan struct{}),
		netDone:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if o.KeepAlive > 0 {
		c.keepAlive = time.Duration(connect.KeepAlive) * time.Second
	}
	if err := c.handshake(ctx, connect); err != nil {
		conn.Close()
		return nil, err
	}
	c.netLeft.Store(2)
	c.left.Store(3)
	go c.readLoop()
	go c.writeLoop()
	go c.dispatchLoop()
	return c, nil
}

// handshake sends CONNECT and reads CONNACK [MQTT-3.1.0-1], [MQTT-3.2.0-1].
func (c *Client) handshake(ctx context.Context, connect *packet.Connect) error {
	// Unblock the I/O below when ctx ends.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(aLongTimeAgo) })
	fail := func(stage string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("mqtt: connect: %s: %w", stage, context.Cause(ctx))
		}
		return fmt.Errorf("mqtt: connect: %s: %w", stage, err)
	}
	buf, err := connect.AppendTo(nil)
	if err != nil {
		stop()
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c.logPacket("sent", connect)
	if _, err := c.conn.Write(buf); err != nil {
		stop()
		return fail("sending CONNECT", err)
	}
	c.lastSent.Store(c.nanotime())
	p, err := c.dec.Next()
	if !stop() {
		// ctx ended: the deadline is set, whatever Next returned.
		return fail("waiting for CONNACK", context.Cause(ctx))
	}
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// [MQTT-3.2.2-6]: the server may close without CONNACK.
		return fail("waiting for CONNACK", fmt.Errorf("server closed the connection: %w", err))
	case errors.Is(err, packet.ErrMalformed) || errors.Is(err, packet.ErrPacketTooLarge):
		return fail("waiting for CONNACK", fmt.Errorf("the server's answer is not MQTT 3.1.1: %w", err))
	case err != nil:
		return fail("waiting for CONNACK", err)
	}
	c.lastRecv.Store(c.nanotime())
	c.logPacket("received", p)
	ack, ok := p.(*packet.Connack)
	if !ok {
		return violation("first packet from the server is %v, not CONNACK [MQTT-3.2.0-1]", p.Type())
	}
	if ack.ReturnCode != packet.Accepted {
		return &ConnackError{Code: ack.ReturnCode}
	}
	if connect.CleanSession && ack.SessionPresent {
		return violation("session present in answer to a clean session [MQTT-3.2.2-1]")
	}
	c.sessionPresent = ack.SessionPresent
	if err := c.conn.SetDeadline(time.Time{}); err != nil {
		return fail("clearing deadline", err)
	}
	return nil
}

// ClientID returns the client identifier sent in CONNECT, generated when
// Options.ClientID was empty.
func (c *Client) ClientID() string { return c.opts.ClientID }

// SessionPresent returns the session present flag of the CONNACK: true when
// the server resumed a session stored under the client identifier
// (spec 3.2.2.2).
func (c *Client) SessionPresent() bool { return c.sessionPresent }

// Done returns a channel that is closed when the connection has ended and
// all of the client's goroutines have exited, a running handler included.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up, and afterwards why it ended:
// ErrClosed after Disconnect or Close, otherwise the failure (an error
// saying "connection lost", ErrPingTimeout, a *packet.Error,
// ErrProtocolViolation).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Publish sends m. At QoS 0 it returns once m is queued for the writer; at
// QoS 1 it waits for PUBACK, at QoS 2 for PUBCOMP (spec 4.3). At QoS 1 and 2
// it first waits for room in the in-flight window (Options.MaxInflight) and
// for a free packet identifier [MQTT-2.3.1-2].
//
// Errors that wrap ErrNotSent mean nothing was sent and a retry is safe:
// ctx ending before the PUBLISH was queued, or the client closed (these
// wrap ErrClosed too). Errors wrapping packet.ErrInvalid mean the message
// breaks a rule (a topic name with wildcards [MQTT-3.3.2-2], empty
// [MQTT-4.7.3-1] or not UTF-8, QoS 3), and errors wrapping
// packet.ErrPacketTooLarge that the PUBLISH would be larger than
// Options.MaxPacketSize: nothing was sent either. Once the PUBLISH is queued: an error wrapping
// ctx.Err() when ctx ends first (the message may still be delivered, and
// its packet identifier stays in use until the server acknowledges it), or
// ErrConnectionLost when the connection ends before the acknowledgement
// (the outcome is unknown).
//
// Publish does not retain m.Payload after it returns. At QoS 0 with a warm
// client it allocates nothing.
func (c *Client) Publish(ctx context.Context, m Message) error {
	if err := packet.ValidTopicName(m.Topic); err != nil {
		return fmt.Errorf("mqtt: publish %s: %w", quote(bytesOf(m.Topic)), err)
	}
	if m.QoS > 2 {
		return fmt.Errorf("mqtt: publish %s: %w", quote(bytesOf(m.Topic)), &packet.Error{Type: packet.PUBLISH, Rule: "MQTT-3.3.1-4", Reason: "QoS 3", Err: packet.ErrInvalid})
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt: publish: %w: %w", ErrNotSent, err)
	}
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: bytesOf(m.Topic), Payload: m.Payload}
	if n := p.Size(); n > c.opts.MaxPacketSize {
		return fmt.Errorf("mqtt: publish %s: %w", quote(p.Topic), &packet.Error{Type: packet.PUBLISH, Reason: strconv.Itoa(n) + " bytes, over Options.MaxPacketSize", Err: packet.ErrPacketTooLarge})
	}
	if m.QoS == 0 {
		return c.sendPublish(ctx, &p)
	}
	if err := c.window.Acquire(ctx, 1); err != nil {
		return fmt.Errorf("mqtt: publish: waiting for the in-flight window: %w: %w", ErrNotSent, err)
	}
	r := &request{kind: packet.PUBLISH, qos: m.QoS, done: make(chan struct{})}
	if err := c.register(ctx, r); err != nil {
		c.window.Release(1)
		return err
	}
	p.PacketID = r.id
	if err := c.sendPublish(ctx, &p); err != nil {
		c.unregister(r)
		return err
	}
	return c.await(ctx, r, "publish")
}

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
func (c *Client) Subscribe(ctx context.Context, subs ...Subscription) ([]packet.SubackCode, error) {
	p := &packet.Subscribe{Subscriptions: make([]packet.Subscription, len(subs))}
	for i, s := range subs {
		if err := packet.ValidTopicFilter(s.Filter); err != nil {
			return nil, fmt.Errorf("mqtt: subscribe %s: %w", quote(bytesOf(s.Filter)), err)
		}
		p.Subscriptions[i] = packet.Subscription{Filter: []byte(s.Filter), QoS: s.QoS}
	}
	r := &request{kind: packet.SUBSCRIBE, subs: append([]Subscription(nil), subs...), done: make(chan struct{})}
	if err := c.request(ctx, r, p, &p.PacketID, "subscribe"); err != nil {
		return nil, err
	}
	var failed []string
	for i, code := range r.codes {
		if code.Failed() {
			failed = append(failed, subs[i].Filter)
		}
	}
	if failed != nil {
		return r.codes, fmt.Errorf("%w: %q", ErrSubscriptionFailed, failed)
	}
	return r.codes, nil
}

// Unsubscribe sends one UNSUBSCRIBE with filters and waits for its UNSUBACK
// (spec 3.10, 3.11). The filters' handlers are removed when the UNSUBACK
// arrives; messages the server had already sent still reach them
// [MQTT-3.10.4-3]. Errors are as for Subscribe.
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	p := &packet.Unsubscribe{Filters: make([][]byte, len(filters))}
	for i, f := range filters {
		if err := packet.ValidTopicFilter(f); err != nil {
			return fmt.Errorf("mqtt: unsubscribe %s: %w", quote(bytesOf(f)), err)
		}
		p.Filters[i] = []byte(f)
	}
	r := &request{kind: packet.UNSUBSCRIBE, filters: append([]string(nil), filters...), done: make(chan struct{})}
	return c.request(ctx, r, p, &p.PacketID, "unsubscribe")
}

// request registers r, sends p with r's packet identifier and waits for the
// acknowledgement.
func (c *Client) request(ctx context.Context, r *request, p packet.Packet, id *uint16, op string) error {
	// Encode once to refuse an invalid packet before taking an identifier.
	*id = 1
	if _, err := p.AppendTo(nil); err != nil {
		return fmt.Errorf("mqtt: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt: %s: %w: %w", op, ErrNotSent, err)
	}
	if err := c.register(ctx, r); err != nil {
		return err
	}
	*id = r.id
	if err := c.send(ctx, p); err != nil {
		c.unregister(r)
		return err
	}
	return c.await(ctx, r, op)
}

// Disconnect sends DISCONNECT after every packet already queued, closes the
// network connection [MQTT-3.14.4-1] and waits for the reader and writer
// goroutines to exit. Nothing is sent after DISCONNECT [MQTT-3.14.4-2], and
// the server discards the will [MQTT-3.14.4-3]. Requests still waiting for
// acknowledgements fail with ErrConnectionLost. Messages received and not
// yet handled are dropped (the server re-sends unacknowledged QoS 1 and 2
// messages of a persistent session), and no handler starts after Disconnect
// returns; a handler already running may still be, so that handlers may
// call Disconnect themselves. Done tells when it has returned.
//
// When ctx ends first, the connection is closed at once and the error wraps
// ctx.Err(). Disconnect is idempotent and safe to call concurrently with
// anything, a connection loss included; after the connection has ended it
// returns nil.
func (c *Client) Disconnect(ctx context.Context) error {
	c.wmu.Lock()
	if !c.wclosing && !c.wdead {
		c.wclosing = true
		d := packet.Disconnect{}
		c.wbuf, _ = d.AppendTo(c.wbuf)
		c.logPacket("sent", &d)
	}
	c.wmu.Unlock()
	signal(c.wake)
	defer c.inbox.stop()
	select {
	case <-c.netDone:
		return nil
	case <-ctx.Done():
		c.shutdown(ErrClosed)
		<-c.netDone // the connection is closed: the reader and writer end at once
		return fmt.Errorf("mqtt: disconnect: %w", ctx.Err())
	}
}

// Close disconnects like Disconnect, waiting at most one second for
// DISCONNECT to be written. It is idempotent.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Disconnect(ctx)
}

// shutdown ends the connection once, for cause: it fails every request in
// flight, closes the network connection and stops the goroutines.
func (c *Client) shutdown(cause error) {
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		c.wdead = true
		flushed := c.wflushed
		c.wflushed = nil
		c.wmu.Unlock()

		lost := fmt.Errorf("%w: %w", ErrConnectionLost, cause)
		if cause == ErrClosed {
			// The request was sent; that the client was closed since does
			// not make a retry safe, so lost must not match ErrClosed.
			lost = fmt.Errorf("%w (the client was closed)", ErrConnectionLost)
		}
		c.mu.Lock()
		c.dead, c.err = true, cause
		for _, r := range c.inflight {
			c.completeLocked(r, lost)
		}
		c.mu.Unlock()

		close(c.closing)
		c.conn.Close()
		if flushed != nil {
			close(flushed)
		}
		if cause != ErrClosed {
			c.log.Warn("mqtt connection lost", slog.Any("error", cause))
		} else {
			c.log.Debug("mqtt connection closed")
		}
	})
}

// exit marks one goroutine as finished; network is true for the reader and
// the writer.
func (c *Client) exit(network bool) {
	if network && c.netLeft.Add(-1) == 0 {
		close(c.netDone)
	}
	if c.left.Add(-1) == 0 {
		close(c.done)
	}
}

func (c *Client) nanotime() int64 { return int64(time.Since(c.epoch)) }

// register gives r a packet identifier not in use [MQTT-2.3.1-2], non-zero
// [MQTT-2.3.1-1], and records it as in flight. When all are in use it waits
// for one to be freed, or for ctx.
func (c *Client) register(ctx context.Context, r *request) error {
	c.mu.Lock()
	for {
		if c.dead {
			c.mu.Unlock()
			return errClosedNotSent
		}
		if len(c.inflight) < 65535 {
			break
		}
		if c.idFreed == nil {
			c.idFreed = make(chan struct{})
		}
		freed := c.idFreed
		c.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return fmt.Errorf("mqtt: waiting for a free packet identifier: %w: %w", ErrNotSent, ctx.Err())
		}
		c.mu.Lock()
	}
	for {
		c.nextID++
		if c.nextID == 0 {
			continue
		}
		if _, used := c.inflight[c.nextID]; !used {
			break
		}
	}
	r.id = c.nextID
	c.inflight[r.id] = r
	c.mu.Unlock()
	// The reader must not wait for room in the inbox while r awaits its
	// acknowledgement.
	signal(c.inbox.room)
	return nil
}

// unregister frees r's identifier when r was never sent.
func (c *Client) unregister(r *request) {
	c.mu.Lock()
	if c.inflight[r.id] == r {
		c.completeLocked(r, nil)
	}
	c.mu.Unlock()
}

// completeLocked ends r with err, frees its identifier [MQTT-2.3.1-3] and,
// for a PUBLISH, its place in the in-flight window. c.mu is held.
func (c *Client) completeLocked(r *request, err error) {
	delete(c.inflight, r.id)
	r.err = err
	close(r.done)
	if r.kind == packet.PUBLISH {
		c.window.Release(1)
	}
	if c.idFreed != nil {
		close(c.idFreed)
		c.idFreed = nil
	}
}

func (c *Client) await(ctx context.Context, r *request, op string) error {
	select {
	case <-r.done:
		if r.err != nil {
			return fmt.Errorf("mqtt: %s: %w", op, r.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: %s: waiting for acknowledgement: %w", op, ctx.Err())
	}
}

// bytesOf returns the bytes of s without copying, for the encoder to read.
// They must never be written.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// quote quotes a topic or filter for an error message, cut to 64 bytes.
func quote(s []byte) string {
	if len(s) > 64 {
		return strconv.Quote(string(s[:64])) + "... (" + strconv.Itoa(len(s)) + " bytes)"
	}
	return strconv.Quote(string(s))
}
