package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// maxPending is the number of encoded bytes that may wait for the writer
// before senders wait for it.
const maxPending = 256 << 10

// aLongTimeAgo is a deadline in the past, set to unblock I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// Message is an application message, sent by Publish or received by a
// Handler (spec 3.3).
type Message struct {
	// Topic is the topic name: at least one character, no wildcards
	// [MQTT-3.3.2-2], UTF-8 without U+0000 [MQTT-1.5.3-2].
	Topic string
	// Payload is the application message, 0 or more bytes (spec 3.3.3). A
	// received payload belongs to the handler.
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
// or 2 message is acknowledged after its handler returns. A handler may call
// the client's methods; while it runs, later messages wait in the inbox (see
// Options.InboxSize).
type Handler func(m Message)

// Subscription is a topic filter to subscribe to (spec 3.8.3).
type Subscription struct {
	Filter string // topic filter (spec 4.7); wildcards "+" and "#" allowed
	QoS    byte   // maximum QoS requested: 0, 1 or 2
	// Handler receives the messages whose topic matches Filter. With several
	// matching subscriptions, each of their handlers runs. Nil sends matching
	// messages to Options.DefaultHandler.
	Handler Handler
}

// A Client is one connection to an MQTT server, made by Dial. It is safe for
// concurrent use. It ends when Disconnect or Close is called or the
// connection fails; Done and Err tell when and why.
type Client struct {
	opts           Options
	conn           net.Conn
	dec            *packet.Decoder // owned by the reader goroutine after Dial
	log            *slog.Logger
	epoch          time.Time // monotonic base of the nanotime stamps below
	keepAlive      time.Duration
	sessionPresent bool

	// Lock order: never hold mu and wmu at the same time.

	wmu       sync.Mutex    // guards the fields below
	wbuf      []byte        // encoded packets waiting for the writer
	wflushed  chan struct{} // closed after the writer's next write; nil if nobody waits
	wclosing  bool          // DISCONNECT is queued: nothing more is accepted [MQTT-3.14.4-2]
	wdead     bool          // the connection has ended
	wake      chan struct{} // capacity 1: wakes the writer
	lastSent  atomic.Int64  // nanotime of the last write
	lastRecv  atomic.Int64  // nanotime of the last packet read
	pingSent  atomic.Int64  // nanotime of the unanswered PINGREQ; 0 if none
	stalled   atomic.Bool   // the reader waits for room in the inbox
	stalledAt atomic.Int64  // nanotime the current stall began

	mu       sync.Mutex          // guards the fields below
	nextID   uint16              // last packet identifier handed out
	inflight map[uint16]*request // requests waiting for their acknowledgement, by packet identifier
	idFreed  chan struct{}       // closed when an identifier is freed; nil if nobody waits
	routes   []route             // subscriptions with handlers, in subscription order
	qos2In   map[uint16]struct{} // received QoS 2 identifiers waiting for PUBREL [MQTT-4.3.3-2]
	dead     bool                // the connection has ended
	err      error               // why it ended

	inbox     chan inbound  // received messages for the dispatcher
	closing   chan struct{} // closed when the connection ends
	done      chan struct{} // closed when every goroutine has exited
	running   atomic.Int32  // goroutines still running
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

// inbound is a received PUBLISH on its way to the dispatcher.
type inbound struct {
	msg     Message
	deliver bool        // false for a QoS 2 duplicate: acknowledge only
	ack     packet.Type // PUBACK, PUBREC, or 0 for QoS 0
	id      uint16
}

type route struct {
	filter  string
	handler Handler
}

// Dial connects to an MQTT server through d: it opens the network
// connection, sends CONNECT built from opts (nil means zero Options) and
// waits for CONNACK, all within ctx and Options.ConnectTimeout.
//
// Errors: ErrInvalidOptions before anything is dialled; a *ConnackError
// when the server refuses the connection (errors.Is matches
// ErrBadUsernameOrPassword and its siblings); an error wrapping ctx.Err() or
// context.DeadlineExceeded, naming the stage (dial, CONNECT, CONNACK), when
// time runs out; a *packet.Error for a malformed answer; ErrProtocolViolation
// when the first packet is not CONNACK [MQTT-3.2.0-1]. On error the network
// connection is closed and no goroutine is left.
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
		wake:     make(chan struct{}, 1),
		inflight: make(map[uint16]*request),
		qos2In:   make(map[uint16]struct{}),
		inbox:    make(chan inbound, o.InboxSize),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if o.KeepAlive > 0 {
		c.keepAlive = time.Duration(connect.KeepAlive) * time.Second
	}
	if err := c.handshake(ctx, connect); err != nil {
		conn.Close()
		return nil, err
	}
	c.running.Store(3)
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
	now := c.nanotime()
	c.lastSent.Store(now)
	p, err := c.dec.Next()
	if !stop() {
		// ctx ended: the deadline is set, whatever Next returned.
		return fail("waiting for CONNACK", context.Cause(ctx))
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// [MQTT-3.2.2-6]: the server may close without CONNACK.
			return fail("waiting for CONNACK", fmt.Errorf("server closed the connection: %w", err))
		}
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
// all of the client's goroutines have exited.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up, and afterwards why it ended:
// ErrClosed after Disconnect or Close, otherwise the failure (a network
// error, ErrPingTimeout, a *packet.Error, ErrProtocolViolation).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Publish sends m. At QoS 0 it returns once m is queued for the writer; at
// QoS 1 it waits for PUBACK, at QoS 2 for PUBCOMP (spec 4.3).
//
// Errors: an error wrapping packet.ErrInvalid, before anything is sent, for
// a topic name with wildcards [MQTT-3.3.2-2], empty [MQTT-4.7.3-1] or not
// UTF-8, QoS 3, or a packet over 268,435,455 bytes; ErrClosed when the
// client is closed (not sent); an error wrapping ctx.Err() when ctx ends
// (if it ends after the PUBLISH was queued, the message may still be
// delivered, and its packet identifier stays in use until the server
// acknowledges it); ErrConnectionLost when the connection ends before the
// acknowledgement (outcome unknown). When all 65,535 packet identifiers are
// in flight, Publish waits for one to be freed [MQTT-2.3.1-2].
//
// Publish does not retain m.Payload after it returns. At QoS 0 with a warm
// client it allocates nothing.
func (c *Client) Publish(ctx context.Context, m Message) error {
	if err := packet.ValidTopicName(m.Topic); err != nil {
		return fmt.Errorf("mqtt: publish %q: %w", m.Topic, err)
	}
	if m.QoS > 2 {
		return fmt.Errorf("mqtt: publish %q: %w", m.Topic, &packet.Error{Type: packet.PUBLISH, Rule: "MQTT-3.3.1-4", Reason: "QoS 3", Err: packet.ErrInvalid})
	}
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: bytesOf(m.Topic), Payload: m.Payload}
	if m.QoS == 0 {
		return c.sendPublish(ctx, &p)
	}
	r := &request{kind: packet.PUBLISH, qos: m.QoS, done: make(chan struct{})}
	if err := c.register(ctx, r); err != nil {
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
// an invalid filter (spec 4.7) or QoS; an error wrapping
// ErrSubscriptionFailed, together with the codes, when the server refused
// some filters; otherwise as for Publish.
func (c *Client) Subscribe(ctx context.Context, subs ...Subscription) ([]packet.SubackCode, error) {
	p := &packet.Subscribe{Subscriptions: make([]packet.Subscription, len(subs))}
	for i, s := range subs {
		if err := packet.ValidTopicFilter(s.Filter); err != nil {
			return nil, fmt.Errorf("mqtt: subscribe %q: %w", s.Filter, err)
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
			return fmt.Errorf("mqtt: unsubscribe %q: %w", f, err)
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
// network connection [MQTT-3.14.4-1] and waits for the client's goroutines
// to exit, a running handler included. Nothing is sent after DISCONNECT
// [MQTT-3.14.4-2], and the server discards the will [MQTT-3.14.4-3].
// Requests still waiting for acknowledgements fail with ErrConnectionLost.
//
// When ctx ends first, the connection is closed at once and the error wraps
// ctx.Err(). Disconnect is idempotent and safe to call concurrently with
// anything, a connection loss included; after the connection has ended it
// returns nil.
func (c *Client) Disconnect(ctx context.Context) error {
	c.wmu.Lock()
	if c.wclosing || c.wdead {
		c.wmu.Unlock()
		return c.wait(ctx)
	}
	c.wclosing = true
	d := packet.Disconnect{}
	c.wbuf, _ = d.AppendTo(c.wbuf)
	c.logPacket("sent", &d)
	c.wmu.Unlock()
	c.wakeWriter()
	return c.wait(ctx)
}

// Close disconnects like Disconnect, waiting at most one second for
// DISCONNECT to be written and the goroutines to exit. It is idempotent.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Disconnect(ctx)
}

func (c *Client) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.shutdown(ErrClosed)
		return fmt.Errorf("mqtt: disconnect: %w", ctx.Err())
	}
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

		c.mu.Lock()
		c.dead, c.err = true, cause
		lost := fmt.Errorf("%w: %w", ErrConnectionLost, cause)
		for id, r := range c.inflight {
			r.err = lost
			close(r.done)
			delete(c.inflight, id)
		}
		if c.idFreed != nil {
			close(c.idFreed)
			c.idFreed = nil
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

// exit marks one goroutine as finished; the last one closes done.
func (c *Client) exit() {
	if c.running.Add(-1) == 0 {
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
			return ErrClosed
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
			return fmt.Errorf("mqtt: waiting for a free packet identifier: %w", ctx.Err())
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

// completeLocked ends r with err and frees its identifier [MQTT-2.3.1-3].
// c.mu is held.
func (c *Client) completeLocked(r *request, err error) {
	delete(c.inflight, r.id)
	r.err = err
	close(r.done)
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

// reserve locks wmu once the write buffer has room, or returns an error with
// wmu unlocked: ErrClosed, or one wrapping ctx.Err().
func (c *Client) reserve(ctx context.Context) error {
	c.wmu.Lock()
	for {
		if c.wdead || c.wclosing {
			c.wmu.Unlock()
			return ErrClosed
		}
		if len(c.wbuf) < maxPending {
			return nil
		}
		if c.wflushed == nil {
			c.wflushed = make(chan struct{})
		}
		flushed := c.wflushed
		c.wmu.Unlock()
		select {
		case <-flushed:
		case <-c.closing:
		case <-ctx.Done():
			return fmt.Errorf("mqtt: waiting for the writer: %w", ctx.Err())
		}
		c.wmu.Lock()
	}
}

// send queues p for the writer.
func (c *Client) send(ctx context.Context, p packet.Packet) error {
	if err := c.reserve(ctx); err != nil {
		return err
	}
	var err error
	c.wbuf, err = p.AppendTo(c.wbuf)
	if err == nil && c.debug() {
		c.logPacket("sent", p)
	}
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("mqtt: %v: %w", p.Type(), err)
	}
	c.wakeWriter()
	return nil
}

// sendPublish is send for a PUBLISH, with static calls so that p does not
// escape and a QoS 0 Publish allocates nothing.
func (c *Client) sendPublish(ctx context.Context, p *packet.Publish) error {
	if err := c.reserve(ctx); err != nil {
		return err
	}
	var err error
	c.wbuf, err = p.AppendTo(c.wbuf)
	if err == nil && c.debug() {
		cp := *p
		c.logPacket("sent", &cp)
	}
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("mqtt: publish %q: %w", p.Topic, err)
	}
	c.wakeWriter()
	return nil
}

// sendAck queues a PUBACK, PUBREC, PUBREL or PUBCOMP. Acknowledgements are
// never held back by the pending-bytes bound, so the reader and the
// dispatcher never wait for the writer. It reports false, sending nothing,
// once DISCONNECT is queued [MQTT-3.14.4-2] or the connection has ended.
func (c *Client) sendAck(t packet.Type, id uint16) bool {
	c.wmu.Lock()
	if c.wdead || c.wclosing {
		c.wmu.Unlock()
		return false
	}
	switch t {
	case packet.PUBACK:
		a := packet.Puback{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	case packet.PUBREC:
		a := packet.Pubrec{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	case packet.PUBREL:
		a := packet.Pubrel{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	default:
		a := packet.Pubcomp{PacketID: id}
		c.wbuf, _ = a.AppendTo(c.wbuf)
	}
	if c.debug() {
		c.logPacket("sent", newAck(t, id))
	}
	c.wmu.Unlock()
	c.wakeWriter()
	return true
}

func (c *Client) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop owns every write to the network connection. It writes what
// senders queued whenever it is woken, so a lone packet goes out at once and
// packets queued while a write is under way go out together in the next one.
// It also runs keep alive.
func (c *Client) writeLoop() {
	defer c.exit()
	var out []byte
	timer := time.NewTimer(c.keepAliveDelay())
	defer timer.Stop()
	for {
		select {
		case <-c.wake:
		case <-timer.C:
		case <-c.closing:
			return
		}
		if err := c.checkKeepAlive(); err != nil {
			c.shutdown(err)
			return
		}
		c.wmu.Lock()
		out, c.wbuf = c.wbuf, out[:0]
		flushed := c.wflushed
		c.wflushed = nil
		closing := c.wclosing
		c.wmu.Unlock()
		if len(out) > 0 {
			if _, err := c.conn.Write(out); err != nil {
				c.shutdown(fmt.Errorf("mqtt: connection lost: write: %w", err))
				return
			}
			c.lastSent.Store(c.nanotime())
		}
		if flushed != nil {
			close(flushed)
		}
		if closing {
			// DISCONNECT was in out: close the connection and send nothing
			// more [MQTT-3.14.4-1], [MQTT-3.14.4-2].
			c.shutdown(ErrClosed)
			return
		}
		timer.Reset(c.keepAliveDelay())
	}
}

// checkKeepAlive queues a PINGREQ when nothing was sent, or nothing
// received, for the keep alive interval [MQTT-3.1.2-23], and fails with
// ErrPingTimeout when a PINGREQ has gone unanswered for PingTimeout. It
// runs on the writer goroutine.
func (c *Client) checkKeepAlive() error {
	if c.keepAlive <= 0 {
		return nil
	}
	now := c.nanotime()
	if sent := c.pingSent.Load(); sent != 0 {
		// While the reader waits for room in the inbox the PINGRESP may be
		// sitting unread: a slow handler is not a dead server.
		if now-sent >= int64(c.opts.PingTimeout) && !c.stalled.Load() && now-c.stalledAt.Load() >= int64(c.opts.PingTimeout) {
			return ErrPingTimeout
		}
		return nil
	}
	if now-c.lastSent.Load() >= int64(c.keepAlive) || now-c.lastRecv.Load() >= int64(c.keepAlive) {
		c.wmu.Lock()
		if !c.wclosing && !c.wdead {
			p := packet.Pingreq{}
			c.wbuf, _ = p.AppendTo(c.wbuf)
			c.pingSent.Store(now)
			if c.debug() {
				c.logPacket("sent", &packet.Pingreq{})
			}
		}
		c.wmu.Unlock()
	}
	return nil
}

// keepAliveDelay returns how long the writer may sleep before the next keep
// alive check.
func (c *Client) keepAliveDelay() time.Duration {
	if c.keepAlive <= 0 {
		return time.Duration(1<<63 - 1)
	}
	now := c.nanotime()
	if sent := c.pingSent.Load(); sent != 0 {
		return max(time.Duration(sent+int64(c.opts.PingTimeout)-now), c.opts.PingTimeout/8, time.Millisecond)
	}
	last := min(c.lastSent.Load(), c.lastRecv.Load())
	return max(time.Duration(last+int64(c.keepAlive)-now), time.Millisecond)
}

// readLoop owns the decoder: it reads packets until the connection ends.
func (c *Client) readLoop() {
	defer c.exit()
	defer close(c.inbox)
	for {
		p, err := c.dec.Next()
		if err != nil {
			c.wmu.Lock()
			closing := c.wclosing
			c.wmu.Unlock()
			switch {
			case closing:
				// Disconnect is under way: the server closing its end
				// after DISCONNECT is the expected end, not a loss.
				err = ErrClosed
			case !errors.Is(err, packet.ErrMalformed) && !errors.Is(err, packet.ErrPacketTooLarge):
				err = fmt.Errorf("mqtt: connection lost: read: %w", err)
			}
			c.shutdown(err)
			return
		}
		c.lastRecv.Store(c.nanotime())
		if c.debug() {
			c.logPacket("received", p)
		}
		if err := c.handle(p); err != nil {
			c.shutdown(err)
			return
		}
	}
}

// handle processes one packet on the reader goroutine.
func (c *Client) handle(p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		return c.receivePublish(p)
	case *packet.Puback:
		return c.acknowledge(p.PacketID, packet.PUBACK)
	case *packet.Pubrec:
		return c.pubrec(p.PacketID)
	case *packet.Pubcomp:
		return c.acknowledge(p.PacketID, packet.PUBCOMP)
	case *packet.Pubrel:
		// Release a received QoS 2 message: its identifier is new again
		// after PUBCOMP [MQTT-4.3.3-2].
		c.mu.Lock()
		delete(c.qos2In, p.PacketID)
		c.mu.Unlock()
		c.sendAck(packet.PUBCOMP, p.PacketID)
		return nil
	case *packet.Suback:
		return c.suback(p)
	case *packet.Unsuback:
		return c.acknowledge(p.PacketID, packet.UNSUBACK)
	case *packet.Pingresp:
		c.pingSent.Store(0)
		return nil
	case *packet.Connack:
		return violation("CONNACK after the first packet (spec 3.2)")
	default:
		return violation("%v from the server; only clients send it (spec 2.2.1)", p.Type())
	}
}

// acknowledge completes the request with identifier id on a PUBACK, PUBCOMP
// or UNSUBACK.
func (c *Client) acknowledge(id uint16, got packet.Type) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.inflight[id]
	if r == nil {
		if !c.dead {
			c.log.Warn("mqtt acknowledgement for a packet identifier not in flight", slog.String("packet", got.String()), slog.Int("id", int(id)))
		}
		return nil
	}
	if want := r.awaits(); want != got {
		return violation("%v for packet identifier %d, which awaits %v", got, id, want)
	}
	if r.kind == packet.UNSUBSCRIBE {
		c.removeRoutesLocked(r.filters)
	}
	c.completeLocked(r, nil)
	return nil
}

// awaits returns the packet type that completes r.
func (r *request) awaits() packet.Type {
	switch {
	case r.kind == packet.SUBSCRIBE:
		return packet.SUBACK
	case r.kind == packet.UNSUBSCRIBE:
		return packet.UNSUBACK
	case r.qos == 1:
		return packet.PUBACK
	case r.released:
		return packet.PUBCOMP
	default:
		return packet.PUBREC
	}
}

// pubrec answers a PUBREC with PUBREL [MQTT-4.3.3-1]; the message is then
// waiting for PUBCOMP.
func (c *Client) pubrec(id uint16) error {
	c.mu.Lock()
	r := c.inflight[id]
	if r != nil {
		if r.kind != packet.PUBLISH || r.qos != 2 {
			c.mu.Unlock()
			return violation("PUBREC for packet identifier %d, which awaits %v", id, r.awaits())
		}
		r.released = true
	}
	c.mu.Unlock()
	// PUBREL also for an unknown identifier, so the server can finish
	// its side of the exchange.
	c.sendAck(packet.PUBREL, id)
	return nil
}

func (c *Client) suback(p *packet.Suback) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.inflight[p.PacketID]
	if r == nil {
		if !c.dead {
			c.log.Warn("mqtt SUBACK for a packet identifier not in flight", slog.Int("id", int(p.PacketID)))
		}
		return nil
	}
	if r.kind != packet.SUBSCRIBE {
		return violation("SUBACK for packet identifier %d, which awaits %v", p.PacketID, r.awaits())
	}
	if len(p.ReturnCodes) != len(r.subs) {
		return violation("SUBACK with %d return codes for %d topic filters [MQTT-3.9.3-1]", len(p.ReturnCodes), len(r.subs))
	}
	r.codes = append([]packet.SubackCode(nil), p.ReturnCodes...)
	for i, s := range r.subs {
		if !r.codes[i].Failed() {
			c.addRouteLocked(s)
		}
	}
	c.completeLocked(r, nil)
	return nil
}

func (c *Client) addRouteLocked(s Subscription) {
	for i := range c.routes {
		if c.routes[i].filter == s.Filter {
			// A new SUBSCRIBE of the same filter replaces the old one
			// [MQTT-3.8.4-3].
			c.routes[i].handler = s.Handler
			return
		}
	}
	c.routes = append(c.routes, route{filter: s.Filter, handler: s.Handler})
}

func (c *Client) removeRoutesLocked(filters []string) {
	c.routes = slices.DeleteFunc(c.routes, func(r route) bool {
		for _, f := range filters {
			if r.filter == f {
				return true
			}
		}
		return false
	})
}

// receivePublish hands a received PUBLISH to the dispatcher, which delivers
// it and then acknowledges it by its QoS [MQTT-3.3.4-1].
func (c *Client) receivePublish(p *packet.Publish) error {
	in := inbound{deliver: true}
	switch p.QoS {
	case 1:
		in.ack, in.id = packet.PUBACK, p.PacketID
	case 2:
		in.ack, in.id = packet.PUBREC, p.PacketID
		c.mu.Lock()
		if _, dup := c.qos2In[p.PacketID]; dup {
			// Received before and not yet released: acknowledge again,
			// never deliver twice [MQTT-4.3.3-2].
			in.deliver = false
		} else {
			c.qos2In[p.PacketID] = struct{}{}
		}
		c.mu.Unlock()
	}
	if in.deliver {
		in.msg = copyMessage(p)
	}
	select {
	case c.inbox <- in:
		return nil
	default:
	}
	c.stalledAt.Store(c.nanotime())
	c.stalled.Store(true)
	defer func() {
		c.stalledAt.Store(c.nanotime())
		c.stalled.Store(false)
	}()
	select {
	case c.inbox <- in:
	case <-c.closing:
	}
	return nil
}

// copyMessage copies a received PUBLISH out of the decoder's buffer with one
// allocation for topic and payload.
func copyMessage(p *packet.Publish) Message {
	buf := make([]byte, len(p.Topic)+len(p.Payload))
	n := copy(buf, p.Topic)
	copy(buf[n:], p.Payload)
	var topic string
	if n > 0 {
		// buf[:n] is never written again, so the string may share it.
		topic = unsafe.String(&buf[0], n)
	}
	return Message{
		Topic:     topic,
		Payload:   buf[n:len(buf):len(buf)],
		QoS:       p.QoS,
		Retain:    p.Retain,
		Duplicate: p.DUP,
	}
}

// dispatchLoop runs handlers in arrival order and sends each QoS 1 or 2
// acknowledgement after the handler returns, so acknowledgements go out in
// the order the messages arrived [MQTT-4.6.0-2], [MQTT-4.6.0-3]. It ends
// once the reader has ended and every queued message has been handled.
func (c *Client) dispatchLoop() {
	defer c.exit()
	var handlers []Handler
	for in := range c.inbox {
		if in.deliver {
			handlers = c.handlersFor(in.msg.Topic, handlers[:0])
			for _, h := range handlers {
				h(in.msg)
			}
		}
		if in.ack != 0 {
			c.sendAck(in.ack, in.id)
		}
	}
}

// handlersFor appends to hs the handlers whose filters match topic, or the
// default handler when none does.
func (c *Client) handlersFor(topic string, hs []Handler) []Handler {
	c.mu.Lock()
	for _, r := range c.routes {
		if MatchTopic(r.filter, topic) {
			h := r.handler
			if h == nil {
				h = c.opts.DefaultHandler
			}
			if h != nil {
				hs = append(hs, h)
			}
		}
	}
	matched := len(hs) > 0
	c.mu.Unlock()
	if !matched && c.opts.DefaultHandler != nil {
		hs = append(hs, c.opts.DefaultHandler)
	}
	return hs
}

// bytesOf returns the bytes of s without copying, for the encoder to read.
// They must never be written.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// newAck returns a new acknowledgement packet of type t, for the log.
func newAck(t packet.Type, id uint16) packet.Packet {
	switch t {
	case packet.PUBACK:
		return &packet.Puback{PacketID: id}
	case packet.PUBREC:
		return &packet.Pubrec{PacketID: id}
	case packet.PUBREL:
		return &packet.Pubrel{PacketID: id}
	default:
		return &packet.Pubcomp{PacketID: id}
	}
}
