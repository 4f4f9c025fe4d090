package client

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/devicemq/mqtt/packet"
	"golang.org/x/sync/semaphore"
)

// core is the client side of an MQTT session (spec 4.1), shared by Client
// (one connection) and Session (connections one after another): packet
// identifiers, outbound messages from acceptance to their last
// acknowledgement, received QoS 2 identifiers, subscriptions and their
// handlers, the inbox and its dispatcher. Network connections (conn) feed
// it the packets they read and take from it the packets to write; tests
// drive it packet by packet through handle.
//
// Lock order: core.mu, then conn.wmu. The Store is called with core.mu
// held, so that records reach it in the order their packets go out.
type core struct {
	opts    Options
	log     *slog.Logger
	store   Store
	pending *semaphore.Weighted // accepted QoS 1/2 messages not yet completed, at most MaxPending
	inbox   *inbox
	stats   counters

	mu       sync.Mutex
	nextID   uint16              // last packet identifier handed out
	nextSeq  uint64              // last sequence number handed out
	reqs     map[uint16]*request // every request holding a packet identifier
	queue    []*request          // accepted PUBLISHes in acceptance order, until completed [MQTT-4.6.0-1]
	unsent   []*request          // those of queue not yet on the current connection, in order
	onWire   int                 // PUBLISHes and PUBRELs written on the current connection and unacknowledged
	in2      map[uint16]struct{} // received QoS 2 identifiers awaiting PUBREL [MQTT-4.3.3-2]
	routes   []route             // granted subscriptions, in subscription order
	conn     *conn               // the current connection, nil while there is none
	connUp   chan struct{}       // closed when a connection is attached; nil if nobody waits
	closed   bool                // the client was closed: no more requests
	err      error               // why it ended, once closed
	idFreed  chan struct{}       // closed when an identifier is freed; nil if nobody waits
	lossFail bool                // Client: requests fail when the connection ends; Session: they wait for the next

	quit    context.Context // done once closed is set: wakes Publish calls waiting for room (MaxPending)
	quitNow context.CancelFunc
}

// request is a packet holding a packet identifier until its last
// acknowledgement: a QoS 1 or 2 PUBLISH, a SUBSCRIBE or an UNSUBSCRIBE.
type request struct {
	id   uint16
	kind packet.Type // PUBLISH, SUBSCRIBE or UNSUBSCRIBE

	// PUBLISH
	seq      uint64
	qos      byte
	retain   bool
	topic    string
	payload  []byte // a copy made at acceptance, never modified
	onWire   bool   // written on the current connection, unacknowledged
	sent     bool   // written on some connection: re-sent with DUP [MQTT-3.3.1-1]
	released bool   // QoS 2: PUBREC received, PUBREL due [MQTT-4.3.3-1]

	// SUBSCRIBE, UNSUBSCRIBE
	subs    []Subscription
	filters []string
	codes   []packet.SubackCode
	on      *conn // the connection it was written on

	err      error
	done     chan struct{} // closed, under core.mu, when err and codes are final
	finished bool          // done is closed
}

// finish closes r.done, once, with err. c.mu is held.
func (r *request) finish(err error) {
	if !r.finished {
		r.finished, r.err = true, err
		close(r.done)
	}
}

// counters are the client's statistics.
type counters struct {
	packetsSent, packetsReceived atomic.Uint64
	bytesSent, bytesReceived     atomic.Uint64
	connections                  atomic.Uint64
}

// Stats are counters of a Client or Session. Packets and bytes count
// whole control packets as encoded (over WebSocket, frame headers are not
// counted); a PUBLISH sent is counted when queued for the writer.
type Stats struct {
	PacketsSent, PacketsReceived uint64
	BytesSent, BytesReceived     uint64
	// InFlight is the number of PUBLISHes and PUBRELs written on the
	// current connection and not yet acknowledged (at most
	// Options.MaxInflight); Pending, the QoS 1 and 2 messages accepted by
	// Publish and not yet completed, InFlight included.
	InFlight, Pending int
	// Connections is the number of connections made; Reconnects, the
	// number after the first.
	Connections, Reconnects uint64
}

func newCore(o Options, lossFail bool) (*core, error) {
	c := &core{
		opts:     o,
		log:      o.Logger,
		store:    o.Store,
		pending:  semaphore.NewWeighted(int64(o.MaxPending)),
		inbox:    newInbox(o.InboxSize),
		reqs:     make(map[uint16]*request),
		in2:      make(map[uint16]struct{}),
		lossFail: lossFail,
	}
	c.quit, c.quitNow = context.WithCancel(context.Background())
	if c.store == nil {
		// The core itself holds the session for as long as it lives; a
		// Store is only needed to outlive it.
		c.store = nopStore{}
	}
	out, in, err := c.store.Load()
	if err != nil {
		return nil, fmt.Errorf("mqtt: loading the session store: %w", err)
	}
	for _, m := range out {
		// Stored messages are re-sent by the first connection; whether
		// they were sent before is unknown, so they carry DUP.
		r := &request{
			id: m.PacketID, kind: packet.PUBLISH, seq: m.Seq, qos: m.QoS, retain: m.Retain,
			topic: m.Topic, payload: m.Payload, sent: true, released: m.Released,
			done: make(chan struct{}),
		}
		if r.id == 0 || c.reqs[r.id] != nil || (r.qos != 1 && r.qos != 2) {
			return nil, fmt.Errorf("mqtt: session store: bad message %d (packet identifier %d, QoS %d)", m.Seq, m.PacketID, m.QoS)
		}
		if !c.pending.TryAcquire(1) {
			return nil, fmt.Errorf("mqtt: session store holds more than MaxPending (%d) messages", o.MaxPending)
		}
		c.reqs[r.id] = r
		c.queue = append(c.queue, r)
		c.nextSeq = max(c.nextSeq, m.Seq)
		c.nextID = max(c.nextID, m.PacketID)
	}
	for _, id := range in {
		c.in2[id] = struct{}{}
	}
	return c, nil
}

// stats returns the counters.
func (c *core) snapshot() Stats {
	c.mu.Lock()
	s := Stats{InFlight: c.onWire, Pending: len(c.queue)}
	c.mu.Unlock()
	s.PacketsSent = c.stats.packetsSent.Load()
	s.PacketsReceived = c.stats.packetsReceived.Load()
	s.BytesSent = c.stats.bytesSent.Load()
	s.BytesReceived = c.stats.bytesReceived.Load()
	s.Connections = c.stats.connections.Load()
	s.Reconnects = max(s.Connections, 1) - 1
	return s
}

// publish is Publish for Client and Session.
func (c *core) publish(ctx context.Context, m Message) error {
	if err := packet.ValidTopicName(m.Topic); err != nil {
		return fmt.Errorf("mqtt: publish %s: %w", quote(bytesOf(m.Topic)), err)
	}
	if m.QoS > 2 {
		return fmt.Errorf("mqtt: publish %s: %w", quote(bytesOf(m.Topic)), &packet.Error{Type: packet.PUBLISH, Rule: "MQTT-3.3.1-4", Reason: "QoS 3", Err: packet.ErrInvalid})
	}
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: bytesOf(m.Topic), Payload: m.Payload}
	if m.QoS > 0 {
		p.PacketID = 1
	}
	if n := p.Size(); n > c.opts.MaxPacketSize {
		return fmt.Errorf("mqtt: publish %s: %w", quote(p.Topic), &packet.Error{Type: packet.PUBLISH, Reason: strconv.Itoa(n) + " bytes, over Options.MaxPacketSize", Err: packet.ErrPacketTooLarge})
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt: publish: %w: %w", ErrNotSent, err)
	}
	if m.QoS == 0 {
		c.mu.Lock()
		cn, closed := c.conn, c.closed
		c.mu.Unlock()
		switch {
		case closed:
			return errClosedNotSent
		case cn == nil:
			return errNotConnected
		}
		return cn.sendPublish(ctx, &p)
	}
	if !c.pending.TryAcquire(1) {
		if err := c.waitPending(ctx); err != nil {
			return err
		}
	}
	// One copy of topic and payload, kept until the last acknowledgement.
	buf := make([]byte, len(m.Topic)+len(m.Payload))
	n := copy(buf, m.Topic)
	copy(buf[n:], m.Payload)
	r := &request{kind: packet.PUBLISH, qos: m.QoS, retain: m.Retain, payload: buf[n:len(buf):len(buf)], done: make(chan struct{})}
	if n > 0 {
		r.topic = unsafe.String(&buf[0], n)
	}
	if err := c.register(ctx, r); err != nil {
		c.pending.Release(1)
		return err
	}
	c.mu.Lock()
	c.nextSeq++
	r.seq = c.nextSeq
	if err := c.store.PutOutbound(r.stored()); err != nil {
		c.mu.Unlock()
		c.unregister(r)
		return fmt.Errorf("mqtt: publish: storing the message: %w: %w", ErrNotSent, err)
	}
	c.queue = append(c.queue, r)
	c.unsent = append(c.unsent, r)
	c.trySendLocked()
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		cn.flush() // write it on this goroutine, unless a write is under way
	}
	return c.await(ctx, r, "publish")
}

// waitPending waits for room among pending messages (MaxPending), until
// ctx ends or the client is closed.
func (c *core) waitPending(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.quit, cancel)
	defer stop()
	if err := c.pending.Acquire(wctx, 1); err != nil {
		if ctx.Err() == nil {
			return errClosedNotSent
		}
		return fmt.Errorf("mqtt: publish: waiting for room among pending messages (MaxPending): %w: %w", ErrNotSent, ctx.Err())
	}
	return nil
}

func (r *request) stored() StoredMessage {
	return StoredMessage{Seq: r.seq, PacketID: r.id, Topic: r.topic, Payload: r.payload, QoS: r.qos, Retain: r.retain, Released: r.released}
}

// trySendLocked queues unsent messages on the current connection while
// the in-flight window has room, in acceptance order. It reports whether it
// queued any; the caller then writes them (flush) or wakes the writer
// (wakeLocked). c.mu is held.
func (c *core) trySendLocked() bool {
	sent := false
	for c.conn != nil && len(c.unsent) > 0 && c.onWire < c.opts.MaxInflight {
		r := c.unsent[0]
		var ok bool
		if r.released {
			ok = c.conn.sendAck(packet.PUBREL, r.id)
		} else {
			p := packet.Publish{DUP: r.sent, QoS: r.qos, Retain: r.retain, Topic: bytesOf(r.topic), PacketID: r.id, Payload: r.payload}
			ok = c.conn.appendPublish(&p)
		}
		if !ok {
			break // the connection is closing; the next one sends it
		}
		c.unsent[0] = nil
		c.unsent = c.unsent[1:]
		r.onWire, r.sent = true, true
		c.onWire++
		sent = true
	}
	if len(c.unsent) == 0 {
		c.unsent = nil
	}
	return sent
}

// sendMoreLocked queues what the window now lets go, and wakes the writer
// for it. c.mu is held.
func (c *core) sendMoreLocked() {
	if c.trySendLocked() {
		signal(c.conn.wake)
	}
}

// subscribe is Subscribe for Client and Session.
func (c *core) subscribe(ctx context.Context, subs []Subscription) ([]packet.SubackCode, error) {
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

// unsubscribe is Unsubscribe for Client and Session.
func (c *core) unsubscribe(ctx context.Context, filters []string) error {
	p := &packet.Unsubscribe{Filters: make([][]byte, len(filters))}
	for i, f := range filters {
		if err := packet.ValidTopicFilter(f); err != nil {
			if pe, ok := err.(*packet.Error); ok {
				e := *pe
				e.Type = packet.UNSUBSCRIBE
				err = &e
			}
			return fmt.Errorf("mqtt: unsubscribe %s: %w", quote(bytesOf(f)), err)
		}
		p.Filters[i] = []byte(f)
	}
	r := &request{kind: packet.UNSUBSCRIBE, filters: append([]string(nil), filters...), done: make(chan struct{})}
	return c.request(ctx, r, p, &p.PacketID, "unsubscribe")
}

// request registers r, writes p with r's packet identifier on the current
// connection (waiting for one when there is none) and waits for the
// acknowledgement.
func (c *core) request(ctx context.Context, r *request, p packet.Packet, id *uint16, op string) error {
	// Encode once to refuse an invalid packet before taking an identifier.
	*id = 1
	if _, err := p.AppendTo(nil); err != nil {
		return fmt.Errorf("mqtt: %s: %w", op, err)
	}
	if n := p.Size(); n > c.opts.MaxPacketSize {
		return fmt.Errorf("mqtt: %s: %w", op, &packet.Error{Type: p.Type(), Reason: strconv.Itoa(n) + " bytes, over Options.MaxPacketSize", Err: packet.ErrPacketTooLarge})
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt: %s: %w: %w", op, ErrNotSent, err)
	}
	cn, err := c.connection(ctx)
	if err != nil {
		return fmt.Errorf("mqtt: %s: %w", op, err)
	}
	if err := c.register(ctx, r); err != nil {
		return err
	}
	*id = r.id
	c.mu.Lock()
	r.on = cn
	c.mu.Unlock()
	if err := cn.send(ctx, p); err != nil {
		c.unregister(r)
		return err
	}
	return c.await(ctx, r, op)
}

// connection returns the current connection, waiting for one with ctx
// (Session) or failing at once without one (Client).
func (c *core) connection(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, closed := c.conn, c.closed
		if cn == nil && !closed && !c.lossFail && c.connUp == nil {
			c.connUp = make(chan struct{})
		}
		up := c.connUp
		c.mu.Unlock()
		switch {
		case closed:
			return nil, errClosedNotSent
		case cn != nil:
			return cn, nil
		case c.lossFail:
			return nil, errClosedNotSent
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a connection: %w: %w", ErrNotSent, ctx.Err())
		}
	}
}

// register gives r a packet identifier not in use [MQTT-2.3.1-2], non-zero
// [MQTT-2.3.1-1], and records it. When all are in use it waits for one to be
// freed, or for ctx.
func (c *core) register(ctx context.Context, r *request) error {
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return errClosedNotSent
		}
		if len(c.reqs) < 65535 {
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
		if _, used := c.reqs[c.nextID]; !used {
			break
		}
	}
	r.id = c.nextID
	c.reqs[r.id] = r
	c.mu.Unlock()
	// The reader must not wait for room in the inbox while r awaits its
	// acknowledgement.
	signal(c.inbox.room)
	return nil
}

// unregister frees r's identifier when r was never sent.
func (c *core) unregister(r *request) {
	c.mu.Lock()
	if c.reqs[r.id] == r {
		c.completeLocked(r, nil)
	}
	c.mu.Unlock()
}

// completeLocked ends r with err and frees its identifier [MQTT-2.3.1-3];
// a PUBLISH leaves the queue, the store and the window. c.mu is held.
func (c *core) completeLocked(r *request, err error) {
	if c.reqs[r.id] != r {
		return
	}
	delete(c.reqs, r.id)
	r.finish(err)
	if r.kind == packet.PUBLISH {
		for i, q := range c.queue {
			if q == r {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				break
			}
		}
		for i, q := range c.unsent {
			if q == r {
				c.unsent = append(c.unsent[:i], c.unsent[i+1:]...)
				break
			}
		}
		if r.onWire {
			r.onWire = false
			c.onWire--
		}
		if err := c.store.DeleteOutbound(r.seq); err != nil {
			c.log.Warn("mqtt session store", slog.Any("error", err))
		}
		c.pending.Release(1)
		c.sendMoreLocked()
	}
	if c.idFreed != nil {
		close(c.idFreed)
		c.idFreed = nil
	}
}

func (c *core) await(ctx context.Context, r *request, op string) error {
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

// attach makes cn the current connection, after CONNACK with session
// present sp. With the session resumed, unacknowledged PUBLISHes go out
// again with DUP and their identifiers, and PUBRELs again, in their
// original order [MQTT-4.4.0-1], [MQTT-4.6.0-1]. With a new session, QoS 2
// messages already released are complete (the server owned them), and the
// others are sent afresh; received QoS 2 identifiers are forgotten
// [MQTT-3.1.2-6]. It returns the subscriptions to restore: all of them
// when the server has no session.
func (c *core) attach(cn *conn, sp bool) []Subscription {
	c.stats.connections.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = cn
	if c.connUp != nil {
		close(c.connUp)
		c.connUp = nil
	}
	var restore []Subscription
	if !sp {
		for _, r := range append([]*request(nil), c.queue...) {
			if r.released {
				c.completeLocked(r, nil)
			}
		}
		for id := range c.in2 {
			delete(c.in2, id)
			if err := c.store.DeleteInbound(id); err != nil {
				c.log.Warn("mqtt session store", slog.Any("error", err))
			}
		}
		for _, rt := range c.routes {
			restore = append(restore, Subscription{Filter: rt.filter, QoS: rt.qos, Handler: rt.handler})
		}
	}
	c.onWire = 0
	c.unsent = c.unsent[:0]
	for _, r := range c.queue {
		r.onWire = false
		c.unsent = append(c.unsent, r)
	}
	c.sendMoreLocked()
	return restore
}

// detach ends cn's part: requests written on it that await their
// acknowledgement fail (SUBSCRIBE, UNSUBSCRIBE; and every PUBLISH for a
// Client) with ErrConnectionLost wrapping cause; a Session's PUBLISHes wait
// for the next connection.
func (c *core) detach(cn *conn, cause error) {
	lost := fmt.Errorf("%w: %w", ErrConnectionLost, cause)
	if cause == ErrClosed {
		// The request was sent; that the client was closed since does
		// not make a retry safe, so lost must not match ErrClosed.
		lost = fmt.Errorf("%w (the client was closed)", ErrConnectionLost)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lossFail && !c.closed {
		// A Client ends with its connection.
		c.closed, c.err = true, cause
		c.quitNow()
		if c.idFreed != nil {
			close(c.idFreed)
			c.idFreed = nil
		}
	}
	if c.conn == cn {
		c.conn = nil
		c.onWire = 0
		for _, r := range c.queue {
			r.onWire = false
		}
	}
	for _, r := range c.reqs {
		switch {
		case r.kind != packet.PUBLISH && r.on == cn:
			c.completeLocked(r, lost)
		case r.kind == packet.PUBLISH && c.lossFail:
			if c.dropUnsentLocked(r, cause) {
				continue
			}
			// The waiter learns the outcome is unknown; the message
			// stays in the Store for the next Client that uses it.
			r.finish(lost)
		}
	}
}

// close marks the client closed with err (once) and fails what waits for
// a connection or an identifier.
func (c *core) close(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed, c.err = true, err
	c.quitNow()
	if c.connUp != nil {
		close(c.connUp)
		c.connUp = nil
	}
	if c.idFreed != nil {
		close(c.idFreed)
		c.idFreed = nil
	}
}

// handle processes one packet read from cn.
func (c *core) handle(cn *conn, p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		c.receivePublish(cn, p)
		return nil
	case *packet.Puback:
		return c.acknowledge(p.PacketID, packet.PUBACK)
	case *packet.Pubrec:
		return c.pubrec(cn, p.PacketID)
	case *packet.Pubcomp:
		return c.acknowledge(p.PacketID, packet.PUBCOMP)
	case *packet.Pubrel:
		// Release a received QoS 2 message: its identifier is new again
		// after PUBCOMP [MQTT-4.3.3-2]. Forget it durably first, so that a
		// restart cannot take a new message with the same identifier for
		// a duplicate.
		c.mu.Lock()
		if _, ok := c.in2[p.PacketID]; ok {
			delete(c.in2, p.PacketID)
			if err := c.store.DeleteInbound(p.PacketID); err != nil {
				c.mu.Unlock()
				return fmt.Errorf("mqtt: session store: %w", err)
			}
		}
		c.mu.Unlock()
		cn.sendAck(packet.PUBCOMP, p.PacketID)
		return nil
	case *packet.Suback:
		return c.suback(p)
	case *packet.Unsuback:
		return c.acknowledge(p.PacketID, packet.UNSUBACK)
	case *packet.Pingresp:
		cn.pingSent.Store(0)
		return nil
	case *packet.Connack:
		return violation("CONNACK after the first packet (spec 3.2)")
	default:
		return violation("%v from the server; only clients send it (spec 2.2.1)", p.Type())
	}
}

// acknowledge completes the request with identifier id on a PUBACK, PUBCOMP
// or UNSUBACK.
func (c *core) acknowledge(id uint16, got packet.Type) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reqs[id]
	if r == nil || r.kind == packet.PUBLISH && !r.onWire {
		if !c.closed {
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

// awaits returns the packet type that completes r, or comes next for it.
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

// pubrec answers a PUBREC with PUBREL [MQTT-4.3.3-1], after recording
// durably that the message was released, so that it is never sent again,
// only its PUBREL.
func (c *core) pubrec(cn *conn, id uint16) error {
	c.mu.Lock()
	r := c.reqs[id]
	if r != nil {
		if r.kind != packet.PUBLISH || r.qos != 2 {
			c.mu.Unlock()
			return violation("PUBREC for packet identifier %d, which awaits %v", id, r.awaits())
		}
		if !r.released {
			r.released = true
			if err := c.store.PutOutbound(r.stored()); err != nil {
				c.mu.Unlock()
				return fmt.Errorf("mqtt: session store: %w", err)
			}
		}
	}
	c.mu.Unlock()
	// PUBREL also for an unknown identifier, so the server can finish
	// its side of the exchange.
	cn.sendAck(packet.PUBREL, id)
	return nil
}

func (c *core) suback(p *packet.Suback) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reqs[p.PacketID]
	if r == nil {
		if !c.closed {
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
		if r.codes[i].Failed() {
			c.log.Warn("mqtt subscription refused", slog.String("filter", s.Filter))
		} else {
			c.addRouteLocked(s)
		}
	}
	c.completeLocked(r, nil)
	return nil
}

func (c *core) addRouteLocked(s Subscription) {
	for i := range c.routes {
		if c.routes[i].filter == s.Filter {
			// A new SUBSCRIBE of the same filter replaces the old one
			// [MQTT-3.8.4-3].
			c.routes[i] = newRoute(s)
			return
		}
	}
	c.routes = append(c.routes, newRoute(s))
}

func (c *core) removeRoutesLocked(filters []string) {
	kept := c.routes[:0]
	for _, r := range c.routes {
		removed := false
		for _, f := range filters {
			removed = removed || r.filter == f
		}
		if !removed {
			kept = append(kept, r)
		}
	}
	clear(c.routes[len(kept):])
	c.routes = kept
}

// receivePublish hands a PUBLISH read from cn to the dispatcher, which
// delivers it and then acknowledges it on cn by its QoS [MQTT-3.3.4-1].
// When the inbox is full it waits for room, unless a request awaits an
// acknowledgement (see inbox).
func (c *core) receivePublish(cn *conn, p *packet.Publish) {
	in := inbound{deliver: true, from: cn}
	switch p.QoS {
	case 1:
		in.ack, in.id = packet.PUBACK, p.PacketID
	case 2:
		in.ack, in.id = packet.PUBREC, p.PacketID
		c.mu.Lock()
		if _, dup := c.in2[p.PacketID]; dup {
			// Received before and not yet released: acknowledge again,
			// never deliver twice [MQTT-4.3.3-2].
			in.deliver = false
		} else {
			c.in2[p.PacketID] = struct{}{}
			if err := c.store.PutInbound(p.PacketID); err != nil {
				// Without the record a re-send could be delivered twice:
				// do not acknowledge, the server sends it again.
				c.mu.Unlock()
				c.log.Warn("mqtt session store", slog.Any("error", err))
				delete(c.in2, p.PacketID)
				return
			}
		}
		c.mu.Unlock()
	}
	if in.deliver {
		in.msg = copyMessage(p)
	}
	for c.inbox.full() && !c.awaiting(cn) {
		select {
		case <-c.inbox.room:
		case <-cn.closing:
			return
		}
	}
	c.inbox.put(in)
}

// awaiting reports whether a request, PINGREQ included, waits for an
// acknowledgement that cn may bring.
func (c *core) awaiting(cn *conn) bool {
	if cn.pingSent.Load() != 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs) > 0
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

// failPending ends the wait of every request with err, leaving outbound
// messages in the Store; without a Store, those never written end with
// ErrNotSent instead (see dropUnsentLocked).
func (c *core) failPending(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reqs {
		if r.kind == packet.PUBLISH && c.dropUnsentLocked(r, ErrClosed) {
			continue
		}
		r.finish(err)
	}
}

// dropUnsentLocked completes r, a PUBLISH, with ErrNotSent when it was never
// written on any connection and no Store keeps it: nothing of it reached
// the server and nothing will send it later, so the caller may send it
// again safely. It reports whether it did. c.mu is held.
func (c *core) dropUnsentLocked(r *request, cause error) bool {
	if r.sent || c.opts.Store != nil {
		return false
	}
	err := errClosedNotSent
	if cause != ErrClosed {
		err = fmt.Errorf("%w: the connection ended before it was written: %w", ErrNotSent, cause)
	}
	c.completeLocked(r, err)
	return true
}
