package client

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/devicemq/mqtt/packet"
	"golang.org/x/time/rate"
)

// core is the client side of an MQTT session (spec 4.1), shared by Client
// (one connection) and Session (connections one after another). It owns
// the parts and passes packets between them; each part keeps its own state
// behind its own methods:
//
//   - outbox (outbox.go, ids.go): packet identifiers, accepted messages in
//     order, the in-flight window, the pending bounds;
//   - router (router.go): subscriptions and their handlers;
//   - inbox (inbox.go): received messages waiting for the dispatcher;
//   - conn (conn.go, writer.go): one network connection, its reader, its
//     writer and keep alive;
//   - the Store, called only here, one call at a time (smu), never under
//     another part's lock.
//
// The parts call one another only through methods; what they all read
// directly is cfg, fixed once the core is set up, and stats, atomic
// counters.
//
// Lock order: smu, then the outbox's lock, then a conn's write lock or the
// inbox's lock. The router's lock is taken alone.
type core struct {
	cfg   config
	out   outbox
	rt    router
	in    inbox
	stats counters

	smu sync.Mutex // serialises Store calls; guards in2
	in2 *qos2Set   // received QoS 2 identifiers awaiting PUBREL [MQTT-4.3.3-2]; nil when none

	rare atomic.Pointer[rareState] // made the first time something rare happens

	// The client's life: done fires once both the dispatcher and the
	// connection (Client) or the supervisor (Session) are gone for good.
	left atomic.Int32
	done event
}

// enter keeps Done from closing while a call on the caller's goroutine
// turns the outbox's decisions into Store calls and OnDrop calls (apply);
// exit ends that. It reports false once Done may have closed: the outbox
// is closed then, and the call has nothing to apply.
func (c *core) enter() bool {
	for {
		n := c.left.Load()
		if n <= 0 {
			return false
		}
		if c.left.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (c *core) exit() { c.quiet() }

// quiet counts one of the two parts of the client's life as gone for good.
func (c *core) quiet() {
	if c.left.Add(-1) == 0 {
		c.done.fire()
	}
}

// connDone runs on cn's reader once cn's reader and writer are done. A
// Client ends with its connection; a Session's supervisor watches its
// connections itself.
func (c *core) connDone(cn *conn) {
	if c.out.endsWithConn() {
		c.close(cn.error())
		c.end()
		c.quiet()
	}
}

// counters are the client's statistics.
type counters struct {
	packetsSent, packetsReceived atomic.Uint64
	bytesSent, bytesReceived     atomic.Uint64
	connections                  atomic.Uint64
}

// rareState counts what a client meets seldom, and limits the log records
// about it; a client that never meets any holds none.
type rareState struct {
	dropped, inboundDropped  atomic.Uint64
	unrouted, unexpectedAcks atomic.Uint64
	logsSuppressed           atomic.Uint64
	log                      rate.Sometimes
	closeErr                 error // why the outbox was closed; under its lock
}

// rareCounts returns the rare counters, made on first use.
func (c *core) rareCounts() *rareState {
	if r := c.rare.Load(); r != nil {
		return r
	}
	c.rare.CompareAndSwap(nil, &rareState{log: rate.Sometimes{First: 10, Interval: time.Minute}})
	return c.rare.Load()
}

// Stats are counters of a Client or Session. Packets and bytes count
// whole control packets as encoded (over WebSocket, frame headers are not
// counted); a packet sent is counted when queued for the writer.
type Stats struct {
	PacketsSent, PacketsReceived uint64
	BytesSent, BytesReceived     uint64
	// InFlight is the number of PUBLISHes and PUBRELs written on the
	// current connection and not yet acknowledged (at most
	// Options.MaxInflight), dropped messages awaiting their
	// acknowledgement included; Pending, the QoS 1 and 2 messages accepted
	// by Publish and neither completed nor dropped, and PendingBytes their
	// topics' and payloads' bytes, with those of dropped messages whose
	// OnDrop call has not yet returned (they hold their room till then).
	InFlight, Pending int
	PendingBytes      int64
	// Inbox is the number of received messages waiting for their
	// handlers, and InboxBytes their bytes as Options.InboxBytes counts
	// them.
	Inbox      int
	InboxBytes int64
	// Connections is the number of connections made; Reconnects, the
	// number after the first.
	Connections, Reconnects uint64
	// Dropped counts the QoS 1 and 2 messages dropped before their
	// acknowledgement (see Options.OnDrop); InboundDropped, the received
	// QoS 0 messages dropped because the inbox was full while a handler
	// might be waiting for an acknowledgement (see Options.InboxSize);
	// Unrouted, the received messages that no handler took (none matched
	// and there is no DefaultHandler; they were acknowledged).
	Dropped, InboundDropped, Unrouted uint64
	// UnexpectedAcks counts acknowledgements for packet identifiers not in
	// flight, which the client ignores; LogsSuppressed, the Warn records
	// about the server's behaviour left out by the rate limit.
	UnexpectedAcks, LogsSuppressed uint64
}

// init sets c up, in the Client or Session that holds it, and loads the
// Store.
// connected counts a connection made.
func (c *core) connected() { c.stats.connections.Add(1) }

func (c *core) init(cfg config, lossFail bool) error {
	c.cfg = cfg
	c.left.Store(2)
	c.out.init(lossFail)
	if cfg.store == nil {
		return nil
	}
	out, in, err := cfg.store.Load()
	if err != nil {
		return fmt.Errorf("mqtt: loading the session store: %w", err)
	}
	if err := c.loadOutbound(out); err != nil {
		return err
	}
	for _, id := range in {
		c.setIn2(id, true)
	}
	return nil
}

// forgetIn2 forgets the received QoS 2 identifiers: a server that kept no
// session will not release them [MQTT-3.1.2-6].
func (c *core) forgetIn2() {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.in2 == nil || c.closedLocked() {
		return
	}
	if st := c.cfg.store; st != nil {
		c.in2.all(func(id uint16) {
			if err := st.DeleteInbound(id); err != nil {
				c.cfg.log.Warn("mqtt session store", slog.Any("error", err))
			}
		})
	}
	c.in2 = nil
}

// end marks that no message will be received any more; onQuiet runs once
// the dispatcher is gone for good.
func (c *core) end() {
	if c.in.end() {
		c.quiet()
	}
}

// loadOutbound queues the stored messages. Stored messages are sent again
// by the first connection; whether they were sent before is unknown, so
// they carry DUP. Of two records under one packet identifier, the older is
// a completed message whose deletion a crash cut off: its identifier was
// given again only after its last acknowledgement.
func (c *core) loadOutbound(out []StoredMessage) error {
	byID := make(map[uint16]int, len(out))
	keep := make([]bool, len(out))
	for i, m := range out {
		if m.PacketID == 0 || m.QoS != 1 && m.QoS != 2 {
			return fmt.Errorf("mqtt: session store: bad message %d (packet identifier %d, QoS %d)", m.Seq, m.PacketID, m.QoS)
		}
		if j, ok := byID[m.PacketID]; ok {
			if out[j].Seq > m.Seq {
				continue
			}
			keep[j] = false
		}
		byID[m.PacketID] = i
		keep[i] = true
	}
	for i, m := range out {
		if !keep[i] {
			if err := c.cfg.store.DeleteOutbound(m.Seq); err != nil {
				return fmt.Errorf("mqtt: session store: %w", err)
			}
			continue
		}
		r := &request{
			id: m.PacketID, kind: packet.PUBLISH, seq: m.Seq, qos: m.QoS, retain: m.Retain,
			topic: m.Topic, payload: m.Payload, written: true, dup: true, released: m.Released,
			attempts: int32(min(m.Attempts, 1<<30)), weight: int64(len(m.Topic) + len(m.Payload)),
			done: make(chan struct{}, 1),
		}
		r.refs.Store(1)
		if !m.Expires.IsZero() {
			r.expires = m.Expires.UnixNano()
		}
		if !c.out.load(r) {
			return fmt.Errorf("mqtt: session store: message %d has packet identifier %d, which another message has", m.Seq, m.PacketID)
		}
	}
	return nil
}

// setIn2 records (or forgets) a received QoS 2 identifier; c.smu is held
// or the client not yet started.
func (c *core) setIn2(id uint16, on bool) {
	switch {
	case on && c.in2 == nil:
		c.in2 = new(qos2Set)
		c.in2.add(id)
	case on:
		c.in2.add(id)
	case c.in2 != nil && c.in2.remove(id):
		c.in2 = nil
	}
}

func (c *core) hasIn2(id uint16) bool { return c.in2 != nil && c.in2.has(id) }

// snapshot returns the counters.
func (c *core) snapshot() Stats {
	var s Stats
	s.InFlight, s.Pending, s.PendingBytes = c.out.counts()
	s.Inbox, s.InboxBytes = c.in.counts()
	s.PacketsSent = c.stats.packetsSent.Load()
	s.PacketsReceived = c.stats.packetsReceived.Load()
	s.BytesSent = c.stats.bytesSent.Load()
	s.BytesReceived = c.stats.bytesReceived.Load()
	s.Connections = c.stats.connections.Load()
	s.Reconnects = max(s.Connections, 1) - 1
	if r := c.rare.Load(); r != nil {
		s.Dropped = r.dropped.Load()
		s.InboundDropped = r.inboundDropped.Load()
		s.Unrouted = r.unrouted.Load()
		s.UnexpectedAcks = r.unexpectedAcks.Load()
		s.LogsSuppressed = r.logsSuppressed.Load()
	}
	return s
}

// peerWarn logs a Warn record about the server's behaviour, a few per
// minute at most; the others are counted in Stats.LogsSuppressed.
func (c *core) peerWarn(msg string, attrs ...slog.Attr) {
	r := c.rareCounts()
	logged := false
	r.log.Do(func() {
		logged = true
		if n := r.logsSuppressed.Load(); n > 0 {
			attrs = append(attrs, slog.Uint64("suppressed_so_far", n))
		}
		c.cfg.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
	})
	if !logged {
		r.logsSuppressed.Add(1)
	}
}

// apply does the work the outbox left in eff, without any part's lock:
// Store calls, in order, then the waiters and OnDrop.
func (c *core) apply(eff []*request) {
	if len(eff) == 0 {
		return
	}
	if st := c.cfg.store; st != nil {
		c.smu.Lock()
		for _, r := range eff {
			var err error
			switch {
			case r.act&actDelete != 0:
				err = st.DeleteOutbound(r.seq)
			case r.act&actPut != 0:
				err = st.PutOutbound(r.stored())
			}
			if err != nil {
				c.cfg.log.Warn("mqtt session store", slog.Any("error", err))
			}
		}
		c.smu.Unlock()
	}
	for _, r := range eff {
		if r.act&actUnroute != 0 {
			c.rt.removeUpTo(r.filters, r.gen.Load())
		}
		if r.act&actDrop != 0 {
			c.rareCounts().dropped.Add(1)
			if r.err != ErrDiscarded {
				c.peerWarn("mqtt message dropped", slog.String("topic", r.topic), slog.Int("qos", int(r.qos)), slog.Any("reason", r.err))
			}
			if f := c.cfg.onDrop; f != nil {
				m, err, w := r.message(), r.err, r.weight
				c.post(func() {
					f(m, err)
					c.out.freeRoom(w)
				})
			}
		}
		if r.act&actFinish != 0 && r.done != nil {
			r.done <- struct{}{}
		}
		if r.act&actRelease != 0 {
			c.out.release(r)
		}
	}
}

// post runs f on the dispatcher, or here when no dispatcher will run again
// (the client is ending: no handler runs any more).
func (c *core) post(f func()) {
	start, inline := c.in.post(f)
	if inline {
		f()
		return
	}
	if start {
		c.startDispatcher()
	}
}

func (c *core) startDispatcher() { go c.dispatch() }

// dispatch is the dispatcher goroutine: it runs handlers in arrival order
// and sends each QoS 1 or 2 acknowledgement after the handler returns, on
// the connection the message came on, so acknowledgements go out in the
// order the messages arrived [MQTT-4.6.0-2], [MQTT-4.6.0-3]; one for a
// connection that has ended is dropped (the server sends the message
// again). It returns when the inbox is empty.
func (c *core) dispatch() {
	for {
		in, f, ok, last := c.in.next()
		if !ok {
			if last {
				c.quiet()
			}
			return
		}
		if f != nil {
			f()
			c.in.idle()
			continue
		}
		if in.deliver && !in.routes.deliver(in.msg, c.cfg.defaultHandler) {
			c.rareCounts().unrouted.Add(1)
		}
		c.in.idle()
		if in.record && !c.recordIn2(in.id) {
			continue // not acknowledged: the server sends it again
		}
		if in.ack != 0 {
			in.from.sendAck(in.ack, in.id, false)
		}
	}
}

// recordIn2 stores the identifier of a QoS 2 message just handled, before
// its PUBREC. Without the record, a restart could deliver the message's
// re-send again; so when the Store fails, the message is not
// acknowledged, and it reports false. An identifier forgotten meanwhile (a
// new session, or an early PUBREL) is not stored: its record would outlive
// the message.
func (c *core) recordIn2(id uint16) bool {
	st := c.cfg.store
	if st == nil {
		return true
	}
	c.smu.Lock()
	if !c.hasIn2(id) {
		c.smu.Unlock()
		return true
	}
	err := st.PutInbound(id)
	c.smu.Unlock()
	if err != nil {
		c.cfg.log.Warn("mqtt session store", slog.Any("error", err))
		return false
	}
	return true
}

// unhandled forgets the identifiers of new QoS 2 messages dropped before
// their handlers ran: the server sends them again, to be delivered then.
func (c *core) unhandled(ids []uint16) {
	if len(ids) == 0 {
		return
	}
	c.smu.Lock()
	for _, id := range ids {
		c.setIn2(id, false)
	}
	c.smu.Unlock()
}

// stopInbox drops what waits for handlers (Disconnect).
func (c *core) stopInbox() { c.unhandled(c.in.stop()) }

// handle processes one packet read from cn, on cn's reader goroutine.
func (c *core) handle(cn *conn, p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		return c.receive(cn, p)
	case *packet.Puback:
		return c.acknowledge(cn, p.PacketID, packet.PUBACK)
	case *packet.Pubcomp:
		return c.acknowledge(cn, p.PacketID, packet.PUBCOMP)
	case *packet.Unsuback:
		return c.acknowledge(cn, p.PacketID, packet.UNSUBACK)
	case *packet.Pubrec:
		return c.pubrec(cn, p.PacketID)
	case *packet.Pubrel:
		// Release a received QoS 2 message: its identifier is new again
		// after PUBCOMP [MQTT-4.3.3-2]. Forget it durably first, so that a
		// restart cannot take a new message with the same identifier for
		// a duplicate.
		c.smu.Lock()
		if c.hasIn2(p.PacketID) {
			c.setIn2(p.PacketID, false)
			if st := c.cfg.store; st != nil {
				if err := st.DeleteInbound(p.PacketID); err != nil {
					c.smu.Unlock()
					return fmt.Errorf("mqtt: session store: %w", err)
				}
			}
		}
		c.smu.Unlock()
		cn.sendAck(packet.PUBCOMP, p.PacketID, true)
		return nil
	case *packet.Suback:
		return c.suback(cn, p)
	case *packet.Pingresp:
		cn.pingSent.Store(noPing)
		return nil
	case *packet.Connack:
		return violation("CONNACK after the first packet (spec 3.2)")
	default:
		return violation("%v from the server; only clients send it (spec 2.2.1)", p.Type())
	}
}

// acknowledge completes the request with identifier id on a PUBACK, a
// PUBCOMP or an UNSUBACK.
func (c *core) acknowledge(cn *conn, id uint16, got packet.Type) error {
	var buf [2]*request
	eff, unexpected, err := c.out.ack(cn, id, got, buf[:0])
	if err != nil {
		return err
	}
	if unexpected {
		c.unexpectedAck(got, id)
	}
	c.apply(eff)
	cn.kick()
	return nil
}

func (c *core) unexpectedAck(got packet.Type, id uint16) {
	c.rareCounts().unexpectedAcks.Add(1)
	c.peerWarn("mqtt acknowledgement for a packet identifier not in flight", slog.String("packet", got.String()), slog.Int("id", int(id)))
}

// pubrec answers a PUBREC with PUBREL [MQTT-4.3.3-1], after recording
// durably that the message was released, so that it is never sent again,
// only its PUBREL.
func (c *core) pubrec(cn *conn, id uint16) error {
	r, m, err := c.out.pubrec(id)
	if err != nil {
		return err
	}
	if r != nil {
		c.smu.Lock()
		err := c.cfg.store.PutOutbound(m)
		c.smu.Unlock()
		if err != nil {
			return fmt.Errorf("mqtt: session store: %w", err)
		}
		if !c.out.released(r, cn) {
			return nil
		}
	}
	cn.sendAck(packet.PUBREL, id, true)
	return nil
}

func (c *core) suback(cn *conn, p *packet.Suback) error {
	r, err := c.out.suback(cn, p)
	if err != nil {
		return err
	}
	if r == nil {
		c.unexpectedAck(packet.SUBACK, p.PacketID)
		return nil
	}
	var refused []string
	for i, s := range r.subs {
		if r.codes[i].Failed() {
			refused = append(refused, s.Filter)
			c.peerWarn("mqtt subscription refused", slog.String("filter", s.Filter))
		}
	}
	if refused != nil {
		c.rt.remove(refused, r.gen.Load())
	}
	var buf [1]*request
	c.apply(c.out.settle(r, nil, 0, buf[:0]))
	return nil
}

// receive hands a PUBLISH read from cn to the dispatcher, which delivers it
// and then acknowledges it on cn by its QoS [MQTT-3.3.4-1].
func (c *core) receive(cn *conn, p *packet.Publish) error {
	in := inbound{deliver: true, from: cn, size: inboundOverhead}
	switch p.QoS {
	case 1:
		in.ack, in.id = packet.PUBACK, p.PacketID
	case 2:
		in.ack, in.id = packet.PUBREC, p.PacketID
		c.smu.Lock()
		if c.hasIn2(p.PacketID) {
			// Received before and not yet released: acknowledge again,
			// never deliver twice [MQTT-4.3.3-2].
			in.deliver = false
		} else {
			// Known from now on; stored once handled, before its PUBREC,
			// so that a message dropped before its handler ran (by
			// Disconnect, or a crash) is delivered when the server sends
			// it again.
			c.setIn2(p.PacketID, true)
			in.record = true
		}
		c.smu.Unlock()
	}
	if in.deliver {
		in.msg = copyMessage(p)
		in.routes = c.rt.snapshot()
		in.size += int64(len(in.msg.Topic) + len(in.msg.Payload))
	}
	return c.queue(cn, &in, p.QoS)
}

// queue puts in into the inbox, holding back reading while it is full (see
// Options.InboxSize).
func (c *core) queue(cn *conn, in *inbound, qos byte) error {
	readOn := false
	for {
		queued, start, busy, dropped, wake := c.in.put(in, readOn, int(c.cfg.inboxSize), int64(c.cfg.inboxBytes))
		if queued {
			if start {
				c.startDispatcher()
			}
			if dropped && in.record {
				c.unhandled([]uint16{in.id})
			}
			return nil
		}
		if !readOn && busy && c.out.awaitingOn(cn) {
			// A handler may be waiting for an acknowledgement behind
			// this message: read on, within InboxBytes.
			readOn = true
			continue
		}
		if readOn && qos == 0 {
			c.rareCounts().inboundDropped.Add(1)
			c.peerWarn("mqtt inbox full: QoS 0 message dropped while a handler may wait for an acknowledgement", slog.String("topic", in.msg.Topic))
			return nil
		}
		if err := cn.holdBack(wake); err != nil {
			if in.record {
				// Never handled: delivered when the server sends it again.
				c.unhandled([]uint16{in.id})
			}
			return err
		}
		readOn = false
	}
}

// detached ends cn's part in the session.
func (c *core) detached(cn *conn, cause error) {
	c.apply(c.out.detach(cn, cause, nil))
}

// resumeWindow lets the window go on after cn's write buffer drained.
func (c *core) resumeWindow(cn *conn) {
	var buf [2]*request
	c.apply(c.out.resume(cn, buf[:0]))
}

// close ends the client with err, once: nothing more is accepted, and every
// accepted message's waiter learns its fate.
//
// Once it returns, the client calls the Store no more, but for a handler
// still running, which records its QoS 2 message after it returns
// (recordIn2): a Store call under way ends first (smu), and later ones find
// the outbox closed.
func (c *core) close(err error) {
	c.apply(c.out.close(err, nil))
	c.smu.Lock()
	c.smu.Unlock() // a barrier: see above
}

// closedLocked reports, with smu held, whether the client is closed: the
// Store is not to be called any more.
func (c *core) closedLocked() bool {
	_, closed := c.out.current()
	return closed
}

// publish is Publish and Enqueue for Client and Session; with wait false it
// returns once a QoS 1 or 2 message is accepted.
func (c *core) publish(ctx context.Context, m Message, wait bool) error {
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
	if n := p.Size(); n > int(c.cfg.maxPacket) {
		return fmt.Errorf("mqtt: publish %s: %w", quote(p.Topic), tooLarge(packet.PUBLISH, n, int(c.cfg.maxPacket)))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt: publish: %w: %w", ErrNotSent, err)
	}
	if m.QoS == 0 {
		cn, closed := c.out.current()
		switch {
		case closed:
			return errClosedNotSent
		case cn == nil:
			return ErrNotConnected
		}
		return cn.sendPublish0(ctx, &p)
	}
	r := c.newPublishRequest(m, wait)
	if !m.Expires.IsZero() && !time.Now().Before(m.Expires) {
		r.noPool = true
		return fmt.Errorf("mqtt: publish %s: %w: %w", quote(p.Topic), ErrNotSent, ErrExpired)
	}
	if err := c.out.reserve(ctx, r); err != nil {
		r.noPool = true
		return err
	}
	// Done waits until what follows is applied (Store calls, OnDrop).
	if !c.enter() {
		c.out.unreserve(r)
		r.noPool = true
		return errClosedNotSent
	}
	if st := c.cfg.store; st != nil {
		// Stored before it can be sent, in sequence order, so that re-sends
		// after a restart keep the order of the first sends.
		c.smu.Lock()
		if c.closedLocked() {
			c.smu.Unlock()
			c.out.unreserve(r)
			r.noPool = true
			c.exit()
			return errClosedNotSent
		}
		r.seq = c.out.nextSeq()
		err := st.PutOutbound(r.stored())
		if err != nil {
			c.smu.Unlock()
			c.out.unreserve(r)
			r.noPool = true
			c.exit()
			return fmt.Errorf("mqtt: publish: storing the message: %w: %w", ErrNotSent, err)
		}
		cn, alone, eff := c.out.enqueue(r, nil)
		c.smu.Unlock()
		c.apply(eff)
		cn.write(alone)
	} else {
		var buf [2]*request
		cn, alone, eff := c.out.enqueue(r, buf[:0])
		c.apply(eff)
		cn.write(alone)
	}
	c.exit()
	if !wait {
		return nil
	}
	err := c.await(ctx, r, "publish")
	c.out.release(r)
	return err
}

// newPublishRequest makes the request for m, with one copy of its topic
// and payload, kept until the last acknowledgement (a Store may keep it
// longer, so then the copy is never reused), and a reference for the
// outbox and, with wait, one for the waiter.
func (c *core) newPublishRequest(m Message, wait bool) *request {
	refs := int32(1)
	if wait {
		refs = 2
	}
	r := c.out.newRequest(refs)
	size := len(m.Topic) + len(m.Payload)
	var buf []byte
	if c.cfg.store == nil && size <= maxPooledMessage {
		r.bufp = getMessageBuffer(size)
		buf = (*r.bufp)[:size]
	} else {
		buf = make([]byte, size)
	}
	n := copy(buf, m.Topic)
	copy(buf[n:], m.Payload)
	r.kind, r.qos, r.retain, r.payload, r.weight = packet.PUBLISH, m.QoS, m.Retain, buf[n:len(buf):len(buf)], int64(len(buf))
	if n > 0 {
		r.topic = unsafe.String(&buf[0], n)
	}
	if !m.Expires.IsZero() {
		r.expires = m.Expires.UnixNano()
	}
	return r
}

// await waits for r's outcome. When ctx ends first, a PUBLISH never
// written is withdrawn (ErrNotSent); one written stays pending
// (ErrPending).
func (c *core) await(ctx context.Context, r *request, op string) error {
	select {
	case <-r.done:
		return r.result(op)
	case <-ctx.Done():
	}
	if r.kind != packet.PUBLISH {
		return fmt.Errorf("mqtt: %s: waiting for acknowledgement: %w", op, ctx.Err())
	}
	var buf [1]*request
	if c.enter() {
		defer c.exit()
	}
	eff, withdrawn, settled := c.out.withdraw(r, buf[:0])
	if settled {
		<-r.done
		return r.result(op)
	}
	if withdrawn {
		c.apply(eff)
		return fmt.Errorf("mqtt: %s: withdrawn before it was sent: %w: %w", op, ErrNotSent, ctx.Err())
	}
	return fmt.Errorf("mqtt: %s: waiting for acknowledgement: %w: %w", op, ErrPending, ctx.Err())
}

func (r *request) result(op string) error {
	if r.err != nil {
		return fmt.Errorf("mqtt: %s: %w", op, r.err)
	}
	return nil
}

// subscribe is Subscribe for Client and Session.
func (c *core) subscribe(ctx context.Context, subs []Subscription) ([]packet.SubackCode, error) {
	p := &packet.Subscribe{Subscriptions: make([]packet.Subscription, len(subs))}
	for i, s := range subs {
		if err := packet.ValidTopicFilter(s.Filter); err != nil {
			return nil, fmt.Errorf("mqtt: subscribe %s: %w", quote(bytesOf(s.Filter)), err)
		}
		p.Subscriptions[i] = packet.Subscription{Filter: bytesOf(s.Filter), QoS: s.QoS}
	}
	r := &request{kind: packet.SUBSCRIBE, subs: append([]Subscription(nil), subs...), done: make(chan struct{}, 1), noPool: true}
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
		p.Filters[i] = bytesOf(f)
	}
	r := &request{kind: packet.UNSUBSCRIBE, filters: append([]string(nil), filters...), done: make(chan struct{}, 1), noPool: true}
	return c.request(ctx, r, p, &p.PacketID, "unsubscribe")
}

// request takes a packet identifier for r, writes p with it on the current
// connection (waiting for one when there is none) and waits for the
// acknowledgement. A SUBSCRIBE's routes are installed before it is written.
func (c *core) request(ctx context.Context, r *request, p packet.Packet, id *uint16, op string) error {
	// Encode once to refuse an invalid packet before taking an identifier.
	*id = 1
	if _, err := p.AppendTo(nil); err != nil {
		return fmt.Errorf("mqtt: %s: %w", op, err)
	}
	if n := p.Size(); n > int(c.cfg.maxPacket) {
		return fmt.Errorf("mqtt: %s: %w", op, tooLarge(p.Type(), n, int(c.cfg.maxPacket)))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mqtt: %s: %w: %w", op, ErrNotSent, err)
	}
	if err := c.out.reserveID(ctx, r); err != nil {
		return fmt.Errorf("mqtt: %s: %w", op, err)
	}
	*id = r.id
	var ended *conn
	for {
		cn, err := c.out.waitConn(ctx, ended)
		if err != nil {
			c.out.unregister(r)
			return fmt.Errorf("mqtt: %s: %w", op, err)
		}
		if !c.out.bind(r, cn) {
			continue // that connection ended meanwhile
		}
		// The routes change as the packet is queued, under the write
		// lock: generations follow the order packets go out in, and a
		// request never queued changes nothing.
		queued := func() {
			if r.kind == packet.SUBSCRIBE {
				r.gen.Store(c.rt.add(r.subs))
			} else {
				r.gen.Store(c.rt.lastGen())
			}
		}
		if err := cn.sendThen(ctx, p, queued); err != nil {
			if err == errConnEnded && ctx.Err() == nil {
				// A Session's connection ended before it was sent: on
				// the next one.
				c.out.unbind(r)
				ended = cn
				continue
			}
			c.out.unregister(r)
			return fmt.Errorf("mqtt: %s: %w", op, err)
		}
		if !c.out.queuedOn(r, cn) {
			// The connection ended as it was queued: it may have gone out.
			c.out.unregister(r)
			return fmt.Errorf("mqtt: %s: %w", op, lostError(cn.error()))
		}
		c.in.nudge()
		return c.await(ctx, r, op)
	}
}

// discard drops the pending messages match selects.
func (c *core) discard(match func(Message) bool) int {
	if !c.enter() {
		return 0
	}
	defer c.exit()
	eff := c.out.discard(match, nil)
	n := 0
	for _, r := range eff {
		if r.act&actDrop != 0 && r.err == ErrDiscarded {
			n++
		}
	}
	c.apply(eff)
	return n
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
