package client

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/devicemq/mqtt/packet"
)

// request is a packet that holds a packet identifier until its last
// acknowledgement: a QoS 1 or 2 PUBLISH, a SUBSCRIBE or an UNSUBSCRIBE.
// The outbox's lock guards its fields, except done, which is closed
// without it once the outcome is settled and its Store work done.
type request struct {
	id   uint16
	kind packet.Type // PUBLISH, SUBSCRIBE or UNSUBSCRIBE

	// PUBLISH: a node of the outbox's list while queued.
	prev, next *request
	seq        uint64
	topic      string
	payload    []byte // a copy made at acceptance, never modified
	expires    int64  // Message.Expires in Unix nanoseconds; 0 for never
	weight     int64  // bytes counted against MaxPendingBytes
	attempts   int32  // connections that ended while it was the oldest message on the wire
	qos        byte
	retain     bool
	queued     bool // in the list
	written    bool // written on some connection: withdrawing it is no longer safe
	dup        bool // the next send carries DUP [MQTT-3.3.1-1]
	onWire     bool // written on the current connection, unacknowledged
	released   bool // QoS 2: PUBREC received, PUBREL due [MQTT-4.3.3-1]
	zombie     bool // dropped while on the wire: its identifier stays taken until its acknowledgement or the connection's end

	// SUBSCRIBE, UNSUBSCRIBE
	on      *conn // the connection it was written on
	subs    []Subscription
	filters []string
	codes   []packet.SubackCode
	gen     atomic.Uint64 // the router generation of its routes, set as it is queued (the reader may see the reply first)

	// Outcome.
	act     reqAction // work left for the outbox's caller
	err     error
	settled bool          // err is final; done is signalled once the work in act is done
	done    chan struct{} // capacity 1: signalled once, by a send, for the one waiter
	refs    atomic.Int32  // PUBLISH: the waiter and the outbox, until each is done with it
	bufp    *[]byte       // the pooled buffer topic and payload are in, if any
	noPool  bool          // never to be reused (see release)
}

// maxPooledMessage is the largest topic and payload, in bytes, copied into
// a pooled buffer (without a Store, which may keep the copy).
const maxPooledMessage = 512

// messageBuffers pools copies by size class: 64, 128, 256 and 512 bytes
// (maxPooledMessage), so that a small message does not take a large
// buffer.
var messageBuffers [4]sync.Pool

func init() {
	for i := range messageBuffers {
		size := 64 << i
		messageBuffers[i].New = func() any { b := make([]byte, size); return &b }
	}
}

// bufferClass returns the index in messageBuffers for size bytes (at most
// maxPooledMessage).
func bufferClass(size int) int {
	switch {
	case size <= 64:
		return 0
	case size <= 128:
		return 1
	case size <= 256:
		return 2
	}
	return 3
}

func getMessageBuffer(size int) *[]byte { return messageBuffers[bufferClass(size)].Get().(*[]byte) }

func putMessageBuffer(b *[]byte) { messageBuffers[bufferClass(cap(*b))].Put(b) }

// maxFreeRequests is the number of completed PUBLISH requests an outbox
// keeps for reuse, with their done channels, so that steady QoS 1 and 2
// publishing makes neither. The list is the outbox's own, not a global
// pool: a channel made inside a testing/synctest bubble must not be used
// outside it, and a client lives in one.
const maxFreeRequests = 8

// newRequest returns a PUBLISH request with refs references.
func (o *outbox) newRequest(refs int32) *request {
	o.mu.Lock()
	r := o.free
	if r != nil {
		o.free, r.next = r.next, nil
		o.nfree--
	}
	o.mu.Unlock()
	if r == nil {
		r = &request{done: make(chan struct{}, 1)}
	}
	r.refs.Store(refs)
	return r
}

// release drops one of r's references; with the last one r goes to o's
// free list. A request that a message dropped on the wire keeps (a zombie)
// is not reused: its identifier outlives its outcome.
func (o *outbox) release(r *request) {
	if r.refs.Add(-1) != 0 || r.noPool {
		return
	}
	select {
	case <-r.done: // signalled after its waiter left
	default:
	}
	if r.bufp != nil {
		putMessageBuffer(r.bufp)
	}
	done := r.done
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.nfree >= maxFreeRequests {
		return
	}
	*r = request{done: done, next: o.free}
	o.free = r
	o.nfree++
}

// reqAction is work the outbox leaves to its caller, to do without its lock:
// Store I/O, callbacks, and waking the request's waiter.
type reqAction uint8

const (
	actFinish  reqAction = 1 << iota // close done
	actDelete                        // Store: DeleteOutbound(seq)
	actPut                           // Store: PutOutbound (attempts changed)
	actDrop                          // OnDrop and Stats.Dropped, with err
	actUnroute                       // UNSUBACK: remove the filters' routes
	actRelease                       // the outbox is done with the request
)

// message returns the message r carries, sharing its payload.
func (r *request) message() Message {
	m := Message{Topic: r.topic, Payload: r.payload, QoS: r.qos, Retain: r.retain}
	if r.expires != 0 {
		m.Expires = time.Unix(0, r.expires)
	}
	return m
}

func (r *request) stored() StoredMessage {
	m := StoredMessage{Seq: r.seq, PacketID: r.id, Topic: r.topic, Payload: r.payload, QoS: r.qos, Retain: r.retain, Released: r.released, Attempts: int(r.attempts)}
	if r.expires != 0 {
		m.Expires = time.Unix(0, r.expires)
	}
	return m
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

// outbox holds what the client sent or will send and awaits the server's
// acknowledgement of: packet identifiers, the accepted QoS 1 and 2
// messages in acceptance order (a doubly linked list, so that an
// acknowledgement completes its message in O(1)), the in-flight window of
// the current connection, and the bounds on pending messages.
//
// Its lock is taken before a conn's write lock and the inbox's lock, never
// after; the Store is never called under it.
//
// An outbox lives only inside a core (see c), whose config and inbox it
// uses; the inbox is nudged when a request is written, as a reader holding
// back may then have to read on.
type outbox struct {
	mu sync.Mutex

	head, tail *request // accepted PUBLISHes, oldest first [MQTT-4.6.0-1]
	cursor     *request // the first of them not written on the current connection; nil when all are
	cn         *conn    // the current connection; nil while there is none
	free       *request // completed requests for reuse, linked by next
	// changed wakes whoever waits for room among pending messages, for a
	// packet identifier or for a connection; they look again.
	changed broadcast
	weight  int64 // bytes of the pending messages (MaxPendingBytes)
	seq     uint64
	ids     idSpace

	inflight int32 // PUBLISHes and PUBRELs written on the current connection and unacknowledged
	count    int32 // accepted PUBLISHes not yet completed or dropped (MaxPending)
	onConn   int32 // SUBSCRIBEs and UNSUBSCRIBEs bound to cn and unacknowledged
	queued   int32 // accepted PUBLISHes in the list, not dropped (Stats.Pending)
	nfree    int8
	lastID   uint16
	blocked  bool // the window stopped for lack of room in cn's write buffer
	holding  bool // attached, and nothing to be written before resumeAfterAttach
	closed   bool // no more requests
	lossFail bool // Client: requests fail when the connection ends; Session: they wait for the next
}

// c returns the core that holds o. An outbox is only ever the out field of
// a core, so stepping back by that field's offset stays inside the same
// allocation (unsafe.Pointer rule 3); it spares every client two pointers.
func (o *outbox) c() *core {
	return (*core)(unsafe.Add(unsafe.Pointer(o), -int(unsafe.Offsetof(core{}.out))))
}

// nextSeq returns a new sequence number.
func (o *outbox) nextSeq() uint64 {
	o.mu.Lock()
	o.seq++
	s := o.seq
	o.mu.Unlock()
	return s
}

// init sets how requests end with a connection: a Client's fail with it
// (lossFail), a Session's wait for the next.
func (o *outbox) init(lossFail bool) { o.lossFail = lossFail }

// endsWithConn reports whether the outbox ends with its connection
// (Client).
func (o *outbox) endsWithConn() bool { return o.lossFail }

// load puts a message of the Store back into the queue, before any
// connection. It reports false for a bad or duplicate packet identifier.
// A Store may hold more than MaxPending messages (released QoS 2 messages
// that were dropped keep their records): all are loaded, and Publish waits
// until fewer are pending.
func (o *outbox) load(r *request) bool {
	if !o.ids.put(r, &o.lastID) {
		return false
	}
	o.count++
	o.weight += r.weight
	o.seq = max(o.seq, r.seq)
	o.linkLocked(r)
	return true
}

// reserve waits for room among pending messages and for a packet
// identifier, and takes both for r, a PUBLISH; or returns an error wrapping
// ErrNotSent.
func (o *outbox) reserve(ctx context.Context, r *request) error {
	o.mu.Lock()
	for {
		if o.closed {
			o.mu.Unlock()
			return errClosedNotSent
		}
		fits := o.count == 0 || o.count < o.c().cfg.maxPending && o.weight+r.weight <= o.c().cfg.maxPendingB
		if fits && !o.ids.full() {
			break
		}
		what, wake := "room among pending messages (MaxPending, MaxPendingBytes)", o.changed.waitLocked()
		if fits {
			what = "a free packet identifier"
		}
		o.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("mqtt: publish: waiting for %s: %w: %w", what, ErrNotSent, ctx.Err())
		}
		o.mu.Lock()
	}
	o.count++
	o.weight += r.weight
	o.ids.take(r, &o.lastID)
	o.mu.Unlock()
	return nil
}

// unreserve gives back what reserve took, for a message that will not be
// queued.
func (o *outbox) unreserve(r *request) {
	o.mu.Lock()
	o.releaseLocked(r)
	o.ids.free(r)
	o.changed.notifyLocked()
	o.mu.Unlock()
}

// dropRoomLocked gives back the room of r, being dropped, unless OnDrop is
// to hear of it: then the room is given back once OnDrop has run, so that
// the callbacks waiting for the dispatcher never outnumber MaxPending nor
// outweigh MaxPendingBytes.
func (o *outbox) dropRoomLocked(r *request) {
	if o.c().cfg.onDrop == nil {
		o.releaseLocked(r)
	}
}

// freeRoom gives back the room of a dropped message once OnDrop ran.
func (o *outbox) freeRoom(weight int64) {
	o.mu.Lock()
	o.count--
	o.weight -= weight
	o.changed.notifyLocked()
	o.mu.Unlock()
}

// releaseLocked gives back r's room among pending messages.
func (o *outbox) releaseLocked(r *request) {
	o.count--
	o.weight -= r.weight
	o.changed.notifyLocked()
}

// reserveID waits for a packet identifier for r, a SUBSCRIBE or
// UNSUBSCRIBE, and takes it; or returns an error wrapping ErrNotSent.
func (o *outbox) reserveID(ctx context.Context, r *request) error {
	o.mu.Lock()
	for o.ids.full() && !o.closed {
		wake := o.changed.waitLocked()
		o.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("mqtt: waiting for a free packet identifier: %w: %w", ErrNotSent, ctx.Err())
		}
		o.mu.Lock()
	}
	defer o.mu.Unlock()
	if o.closed {
		return errClosedNotSent
	}
	o.ids.take(r, &o.lastID)
	return nil
}

// idFree reports whether a packet identifier is free now.
func (o *outbox) idFree() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.ids.full()
}

// bind records that r, a SUBSCRIBE or UNSUBSCRIBE, is about to be written
// on cn, so that it fails with cn. It reports false when cn is no longer
// the current connection.
func (o *outbox) bind(r *request, cn *conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cn != cn {
		return false
	}
	r.on = cn
	o.onConn++
	return true
}

// unregister frees r's identifier when r was never written.
func (o *outbox) unregister(r *request) {
	o.mu.Lock()
	o.unbindLocked(r)
	o.ids.free(r)
	o.changed.notifyLocked()
	o.mu.Unlock()
}

// queuedOn records that r, a SUBSCRIBE or UNSUBSCRIBE bound to cn, is
// queued there. It reports false when cn ended meanwhile (detach unbound
// r): r may have been written, and its outcome is unknown. It reports true
// when r was answered already (the reply may beat the call).
func (o *outbox) queuedOn(r *request, cn *conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.settled || r.written {
		return true // answered already
	}
	if r.on != cn || o.cn != cn {
		return false
	}
	r.written = true
	return true
}

// unbind undoes bind for r, not sent, which keeps its identifier.
func (o *outbox) unbind(r *request) {
	o.mu.Lock()
	o.unbindLocked(r)
	o.mu.Unlock()
}

// unbindLocked undoes bind once r is answered or failed.
func (o *outbox) unbindLocked(r *request) {
	if r.on != nil && r.on == o.cn {
		o.onConn--
	}
	r.on = nil
}

// enqueue queues r, a reserved PUBLISH (stored first, when there is a
// Store), and writes what the window lets go on the current connection. It
// returns that connection, for the caller to write to, and whether r is
// alone in flight there: then the caller writes it at once, on its own
// goroutine; otherwise the writer goroutine takes it, together with what
// else comes meanwhile.
func (o *outbox) enqueue(r *request, eff []*request) (*conn, bool, []*request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.seq == 0 {
		o.seq++
		r.seq = o.seq
	}
	o.linkLocked(r)
	if o.closed {
		// Closed since reserve: the message ends as the others did.
		return nil, false, o.closeOneLocked(r, eff)
	}
	eff = o.sendLocked(eff)
	return o.cn, o.inflight == 1 && r.onWire, eff
}

func (o *outbox) linkLocked(r *request) {
	r.queued = true
	o.queued++
	r.prev = o.tail
	if o.tail != nil {
		o.tail.next = r
	} else {
		o.head = r
	}
	o.tail = r
	if o.cursor == nil {
		o.cursor = r
	}
}

func (o *outbox) unlinkLocked(r *request) {
	if !r.queued {
		return
	}
	if !r.zombie {
		o.queued--
	}
	if o.cursor == r {
		o.cursor = r.next
	}
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		o.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		o.tail = r.prev
	}
	r.prev, r.next, r.queued = nil, nil, false
}

// settleLocked decides r's outcome: err (nil for success), and the work
// act left to the caller, who finishes r.
func settleLocked(r *request, err error, act reqAction, eff []*request) []*request {
	if r.settled {
		return eff
	}
	r.settled, r.err, r.act = true, err, act|actFinish
	return append(eff, r)
}

// completeLocked ends r, a PUBLISH, with its last acknowledgement: it
// leaves the queue and the window, and its identifier and room are free
// [MQTT-2.3.1-3].
func (o *outbox) completeLocked(r *request, eff []*request) []*request {
	o.unlinkLocked(r)
	if r.onWire {
		r.onWire = false
		o.inflight--
	}
	o.ids.free(r)
	o.changed.notifyLocked()
	if !r.zombie {
		o.releaseLocked(r)
	}
	act := actRelease
	if o.c().cfg.store != nil {
		act |= actDelete
	}
	if r.zombie {
		// Dropped already; its waiter and OnDrop were told then. A
		// released QoS 2 message's record goes now.
		if r.released && o.c().cfg.store != nil {
			eff = append(eff, &request{act: actDelete, seq: r.seq, settled: true, noPool: true})
		}
		return eff
	}
	return settleLocked(r, nil, act, eff)
}

// dropLocked drops r, a PUBLISH not yet released, with err (wrapping
// ErrDropped). A message on the wire keeps its identifier, and its place
// in the window, until its acknowledgement or the connection's end, so
// that a late acknowledgement never completes another message.
//
// A QoS 2 message that was written is released instead of forgotten: the
// server may hold its identifier, awaiting a PUBREL [MQTT-4.3.3-1], and
// would take a new message under it for a duplicate. It stays queued as a
// PUBREL to send (on this connection once its PUBREC comes, or on the
// next), and its PUBCOMP frees the identifier. The server may deliver it
// then, as it may have already.
func (o *outbox) dropLocked(r *request, err error, eff []*request) []*request {
	// OnDrop gets the message's copy to keep: it is not reused.
	r.bufp = nil
	if r.qos == 2 && r.written && !r.released {
		o.dropRoomLocked(r)
		o.queued--
		r.zombie, r.noPool, r.released = true, true, true
		if o.c().cfg.store != nil {
			// Stored released, from a copy: r's fields change under the
			// lock, and the Store is called without it.
			eff = append(eff, &request{act: actPut, kind: packet.PUBLISH, seq: r.seq, id: r.id, topic: r.topic, payload: r.payload, qos: 2, retain: r.retain, released: true, attempts: r.attempts, expires: r.expires, settled: true, noPool: true})
		}
		return o.zombieLocked(r, err, 0, eff)
	}
	o.unlinkLocked(r)
	o.dropRoomLocked(r)
	var act reqAction
	if o.c().cfg.store != nil {
		act |= actDelete
	}
	if r.onWire {
		r.zombie, r.noPool = true, true
		return o.zombieLocked(r, err, act, eff)
	}
	o.ids.free(r)
	o.changed.notifyLocked()
	return settleLocked(r, err, act|actDrop|actRelease, eff)
}

// zombieLocked settles r, dropped while on the wire, with act, and lets
// its copy of the message go: the request stays until its identifier is
// free (at most MaxInflight of them), but the message's bytes, which no
// longer count against MaxPendingBytes, go with the effect that tells
// OnDrop, not with r.
func (o *outbox) zombieLocked(r *request, err error, act reqAction, eff []*request) []*request {
	if r.settled {
		return eff
	}
	d := &request{kind: packet.PUBLISH, act: actDrop, seq: r.seq, id: r.id, topic: r.topic, payload: r.payload, qos: r.qos, retain: r.retain, expires: r.expires, weight: r.weight, err: err, settled: true, noPool: true}
	r.topic, r.payload = "", nil
	eff = settleLocked(r, err, act, eff)
	return append(eff, d)
}

// expired reports whether r's expiry has passed.
func expired(r *request, now int64) bool { return r.expires != 0 && now >= r.expires }

// sendLocked writes, in acceptance order, the PUBLISHes (and PUBRELs of
// released QoS 2 messages) not yet written on the current connection, while
// the in-flight window and the connection's write buffer have room.
// Expired messages are dropped on the way. It does not wake the writer:
// callers flush or kick the connection.
func (o *outbox) sendLocked(eff []*request) []*request {
	cn := o.cn
	if cn == nil || o.holding {
		return eff
	}
	now := int64(0)
	wrote := false
	for o.cursor != nil && o.inflight < o.c().cfg.maxInflight {
		r := o.cursor
		if !r.released && r.expires != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if expired(r, now) {
				eff = o.dropLocked(r, ErrExpired, eff)
				continue
			}
		}
		var res appendResult
		if r.released {
			res = cn.tryAppendAck(packet.PUBREL, r.id)
		} else {
			p := packet.Publish{DUP: r.dup, QoS: r.qos, Retain: r.retain, Topic: bytesOf(r.topic), PacketID: r.id, Payload: r.payload}
			res = cn.tryAppendPublish(&p)
		}
		if res != appended {
			o.blocked = res == noRoom
			break
		}
		o.cursor = r.next
		r.onWire, r.written, r.dup = true, true, true
		o.inflight++
		wrote = true
	}
	if wrote {
		o.c().in.nudge()
	}
	return eff
}

// resume writes what the window lets go on cn, after cn's write buffer
// drained.
func (o *outbox) resume(cn *conn, eff []*request) []*request {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cn != cn || !o.blocked {
		return eff
	}
	o.blocked = false
	return o.sendLocked(eff)
}

// ack handles a PUBACK, a PUBCOMP or an UNSUBACK for id, read from cn. It
// returns the UNSUBSCRIBE completed, if any (for the router), whether id
// was unexpected, and an error for a protocol violation.
func (o *outbox) ack(cn *conn, id uint16, got packet.Type, eff []*request) ([]*request, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.ids.get(id)
	if r == nil || r.kind == packet.PUBLISH && !r.onWire || r.kind != packet.PUBLISH && r.on != cn {
		return eff, !o.closed, nil
	}
	if want := r.awaits(); want != got {
		return eff, false, violation("%v for packet identifier %d, which awaits %v", got, id, want)
	}
	if r.kind == packet.UNSUBSCRIBE {
		o.unbindLocked(r)
		o.ids.free(r)
		o.changed.notifyLocked()
		return settleLocked(r, nil, actUnroute, eff), false, nil
	}
	eff = o.completeLocked(r, eff)
	return o.sendLocked(eff), false, nil
}

// suback handles a SUBACK read from cn: it returns the SUBSCRIBE it
// completes, or nil when id was unexpected, or an error for a protocol
// violation. The caller settles the returned request after updating the
// router.
func (o *outbox) suback(cn *conn, p *packet.Suback) (*request, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.ids.get(p.PacketID)
	if r == nil || r.kind == packet.SUBSCRIBE && r.on != cn {
		return nil, nil
	}
	if r.kind != packet.SUBSCRIBE {
		return nil, violation("SUBACK for packet identifier %d, which awaits %v", p.PacketID, r.awaits())
	}
	if len(p.ReturnCodes) != len(r.subs) {
		return nil, violation("SUBACK with %d return codes for %d topic filters [MQTT-3.9.3-1]", len(p.ReturnCodes), len(r.subs))
	}
	r.codes = append([]packet.SubackCode(nil), p.ReturnCodes...)
	r.written = true // answered: queuedOn may come after
	o.unbindLocked(r)
	o.ids.free(r)
	o.changed.notifyLocked()
	return r, nil
}

// settle settles r, a request the caller holds, with err.
func (o *outbox) settle(r *request, err error, act reqAction, eff []*request) []*request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return settleLocked(r, err, act, eff)
}

// pubrec handles a PUBREC for id, read from cn. It returns the message to
// release when its release must be stored before the PUBREL goes out (the
// caller then stores m and calls released), and an error for a protocol
// violation. Unless it returns a message, the caller sends PUBREL, also for
// an unknown identifier, so the server can finish its side.
func (o *outbox) pubrec(id uint16) (r *request, m StoredMessage, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r = o.ids.get(id)
	if r == nil || r.kind == packet.PUBLISH && !r.onWire {
		return nil, m, nil
	}
	if r.kind != packet.PUBLISH || r.qos != 2 {
		return nil, m, violation("PUBREC for packet identifier %d, which awaits %v", id, r.awaits())
	}
	if r.released || r.zombie || o.c().cfg.store == nil {
		// A dropped message's PUBREL goes out too: the server has it.
		r.released = true
		return nil, m, nil
	}
	m = r.stored()
	m.Released = true
	return r, m, nil
}

// released marks r released once its release is stored. It reports
// whether the caller should send its PUBREL on cn: not when cn has ended
// meanwhile (the next connection sends it).
func (o *outbox) released(r *request, cn *conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	r.released = true
	return o.cn == cn && r.onWire
}

// withdraw takes r, a PUBLISH whose waiter gave up, out of the queue when
// it was never written: nothing of it reached the server. It reports
// whether it did, and whether r was settled already.
func (o *outbox) withdraw(r *request, eff []*request) ([]*request, bool, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.settled {
		return eff, false, true
	}
	if r.written || !r.queued {
		return eff, false, false
	}
	o.unlinkLocked(r)
	o.ids.free(r)
	o.changed.notifyLocked()
	o.releaseLocked(r)
	act := actRelease
	if o.c().cfg.store != nil {
		act |= actDelete
	}
	return settleLocked(r, nil, act, eff), true, false
}

// discard drops the queued messages not yet released for which match
// returns true.
func (o *outbox) discard(match func(Message) bool, eff []*request) []*request {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		// The Store keeps what it holds for the next client.
		return eff
	}
	start := len(eff)
	// All of match's answers first: should it panic, nothing has changed.
	var picked []*request
	for r := o.head; r != nil; r = r.next {
		if !r.released && !r.zombie && match(r.message()) {
			picked = append(picked, r)
		}
	}
	for _, r := range picked {
		eff = o.dropLocked(r, ErrDiscarded, eff)
	}
	eff = o.sendLocked(eff)
	// sendLocked may drop older messages (expired) after the picked ones:
	// OnDrop hears of them in acceptance order.
	sortDrops(eff[start:])
	return eff
}

// sortDrops puts the drops among eff in acceptance order, leaving every
// other effect in its place.
func sortDrops(eff []*request) {
	var at []int
	var drops []*request
	for i, r := range eff {
		if r.act&actDrop != 0 {
			at = append(at, i)
			drops = append(drops, r)
		}
	}
	if len(drops) < 2 {
		return
	}
	slices.SortStableFunc(drops, func(a, b *request) int { return cmp.Compare(a.seq, b.seq) })
	for i, r := range drops {
		eff[at[i]] = r
	}
}

// attach makes cn the current connection, after a CONNACK with session
// present sp. With the session resumed, every message not completed goes
// out again, in its original order, with DUP and its identifier, or as its
// PUBREL once released [MQTT-4.4.0-1], [MQTT-4.6.0-1]. With a new session,
// released QoS 2 messages are complete (the server took them), and the
// others are sent as new messages, without DUP [MQTT-3.3.1-1]. Nothing is
// written before resume.
func (o *outbox) attach(cn *conn, sp bool, eff []*request) []*request {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cn = cn
	o.inflight = 0
	o.blocked = false
	for r := o.head; r != nil; {
		next := r.next
		r.onWire = false
		switch {
		case !sp && r.released:
			eff = o.completeLocked(r, eff)
		case !sp:
			r.dup = false
		}
		r = next
	}
	o.cursor = o.head
	o.holding = true
	o.changed.notifyLocked()
	return eff
}

// resumeAfterAttach writes what the window lets go on the connection just
// attached: a Session first makes its subscriptions again, whose answers
// the pending messages may ask for.
func (o *outbox) resumeAfterAttach(eff []*request) []*request {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holding = false
	o.changed.notifyLocked() // requests waiting for the connection
	return o.sendLocked(eff)
}

// detach ends cn's part. SUBSCRIBEs and UNSUBSCRIBEs written on it fail
// with ErrConnectionLost wrapping cause; PUBLISHes wait for the next
// connection (Session) or end (Client, see closeLocked). The oldest message
// on the wire counts an attempt (MaxAttempts).
func (o *outbox) detach(cn *conn, cause error, eff []*request) []*request {
	lost := lostError(cause)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cn == cn {
		o.cn = nil
		if h := o.head; h != nil && h.onWire && cause != ErrClosed {
			// A connection the client closed is no attempt.
			h.attempts++
			switch {
			case o.c().cfg.maxAttempts > 0 && h.attempts >= o.c().cfg.maxAttempts && !h.released:
				h.onWire = false
				eff = o.dropLocked(h, ErrTooManyAttempts, eff)
			case o.c().cfg.maxAttempts > 0 && o.c().cfg.store != nil:
				eff = append(eff, &request{kind: packet.PUBLISH, act: actPut, seq: h.seq, id: h.id, topic: h.topic, payload: h.payload, qos: h.qos, retain: h.retain, released: h.released, attempts: h.attempts, expires: h.expires, settled: true})
			}
		}
		for r := o.head; r != nil; r = r.next {
			r.onWire = false
		}
		o.inflight = 0
		o.cursor = o.head
		o.blocked = false
		o.holding = false
	}
	for _, r := range o.ids.used {
		switch {
		case r.zombie && r.onWire:
			// A dropped message's identifier is free with its connection.
			r.onWire = false
			o.ids.free(r)
			o.changed.notifyLocked()
		case r.kind != packet.PUBLISH && r.on == cn && !r.written:
			// Not queued yet: its caller sends it again, or gives up.
			r.on = nil
		case r.kind != packet.PUBLISH && r.on == cn:
			r.on = nil
			o.ids.free(r)
			o.changed.notifyLocked()
			eff = settleLocked(r, lost, 0, eff)
		}
	}
	if o.cn == nil {
		o.onConn = 0
	}
	if o.lossFail && !o.closed {
		eff = o.closeLocked(cause, eff)
	}
	return eff
}

// lostError is the error of a request written on a connection that ended
// with cause before its acknowledgement.
func lostError(cause error) error {
	if cause == ErrClosed {
		// The request was sent; that the client was closed since does
		// not make a retry safe, so the error must not match ErrClosed.
		return fmt.Errorf("%w (the client was closed)", ErrConnectionLost)
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, cause)
}

// close ends the outbox with err: nothing more is accepted, and every
// accepted message's waiter learns its fate (see closeOneLocked).
func (o *outbox) close(err error, eff []*request) []*request {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return eff
	}
	return o.closeLocked(err, eff)
}

func (o *outbox) closeLocked(err error, eff []*request) []*request {
	o.closed = true
	o.c().rareCounts().closeErr = err
	o.changed.notifyLocked()
	o.changed.notifyLocked()
	o.changed.notifyLocked()
	for r := o.head; r != nil; {
		next := r.next
		eff = o.closeOneLocked(r, eff)
		r = next
	}
	return eff
}

// closeOneLocked tells r's waiter, the client having ended (with the
// error close recorded):
// kept by a Store, r stays there for the next client (ErrPending); never
// written and kept by none, it is withdrawn (ErrNotSent); written and kept
// by none, its outcome is unknown (ErrConnectionLost).
func (o *outbox) closeOneLocked(r *request, eff []*request) []*request {
	cause := o.c().rareCounts().closeErr
	switch {
	case o.c().cfg.store != nil:
		err := fmt.Errorf("%w: the client ended and the message stays in the Store: %w", ErrPending, cause)
		if r.written {
			err = fmt.Errorf("%w; %w", lostError(cause), ErrPending)
		}
		// The message stays queued (and stored): only its waiter is
		// told.
		if !r.settled {
			r.settled, r.err, r.act = true, err, actFinish
			eff = append(eff, r)
		}
		return eff
	case !r.written:
		o.unlinkLocked(r)
		o.ids.free(r)
		o.releaseLocked(r)
		err := errClosedNotSent
		if cause != ErrClosed {
			err = fmt.Errorf("%w: the connection ended before it was written: %w", ErrNotSent, cause)
		}
		return settleLocked(r, err, actRelease, eff)
	default:
		// The client keeps nothing of it: it leaves the queue.
		o.unlinkLocked(r)
		o.ids.free(r)
		if !r.zombie {
			o.releaseLocked(r)
		}
		return settleLocked(r, lostError(cause), actRelease, eff)
	}
}

// waitConn returns the current connection, waiting for one with ctx
// (Session) or failing at once without one (Client).
// A connection that ended (old) does not count.
func (o *outbox) waitConn(ctx context.Context, old *conn) (*conn, error) {
	o.mu.Lock()
	for {
		cn, closed := o.cn, o.closed
		// Not while a Session restores its subscriptions (holding): a
		// request queued ahead of those SUBSCRIBEs would reach the server
		// in another order than its generation says.
		if cn != nil && cn != old && !o.holding {
			o.mu.Unlock()
			return cn, nil
		}
		if closed || o.lossFail {
			o.mu.Unlock()
			return nil, errClosedNotSent
		}
		wake := o.changed.waitLocked() // notified by detach and attach
		o.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a connection: %w: %w", ErrNotSent, ctx.Err())
		}
		o.mu.Lock()
	}
}

// current returns the current connection and whether the outbox is
// closed.
func (o *outbox) current() (*conn, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cn, o.closed
}

// awaitingOn reports whether a request written on cn awaits its
// acknowledgement.
func (o *outbox) awaitingOn(cn *conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cn == cn && (o.inflight > 0 || o.onConn > 0)
}

// counts returns the window's use, and the pending messages (queued in
// acceptance order) and their bytes.
func (o *outbox) counts() (inflight, pending int, weight int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int(o.inflight), int(o.queued), o.weight
}
