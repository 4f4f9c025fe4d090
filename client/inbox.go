package client

import (
	"sync"
	"sync/atomic"

	"github.com/devicemq/mqtt/packet"
)

// inboundOverhead is what a queued message costs beyond its topic and
// payload, in bytes, as InboxBytes counts it: the queue entry and the
// allocation of its copy.
const inboundOverhead = 160

// inbound is a received PUBLISH on its way to its handlers.
type inbound struct {
	msg     Message
	routes  *routes // the routes in force when it was read
	from    *conn   // the connection it came on, which its acknowledgement goes to
	size    int64   // bytes counted against InboxBytes
	id      uint16
	ack     packet.Type // PUBACK, PUBREC, or 0 for QoS 0
	deliver bool        // false for a QoS 2 duplicate: acknowledge only
	record  bool        // a new QoS 2 message: store its identifier once handled, before the PUBREC
}

// inbox is the queue between the reader and the dispatcher, which runs
// handlers one at a time in arrival order. It is bounded by InboxSize
// messages and InboxBytes bytes (see Options.InboxSize for the one case
// where the count may be exceeded). The dispatcher is a goroutine that
// exists only while there is work: it starts with the first message put
// into an empty inbox and ends when the inbox is empty, so an idle client
// keeps none.
//
// Callbacks that must run between handlers (OnDrop) are queued ahead of
// the messages; there are at most as many as messages dropped, which
// MaxPending bounds, and they count against neither bound.
//
// Lock order: the outbox's lock may be held when the inbox's is taken,
// never the reverse.
type inbox struct {
	mu      sync.Mutex
	q       *queue    // made with the first message
	bytes   int64     // of the waiting messages
	room    broadcast // wakes the reader holding back
	running bool      // a dispatcher goroutine exists or is starting
	ended   bool      // nothing more is put; the dispatcher drains what is queued
	stopped bool      // Disconnect: what is queued is dropped, no handler starts
	quiet   bool      // ended, and the dispatcher is gone for good
	busy    atomic.Bool
	waiting atomic.Bool // the reader holds back for room
}

// queue holds the waiting messages, items[head:]; callbacks go first.
type queue struct {
	items  []inbound // messages: items[head:]
	head   int
	events []func() // callbacks, in the order posted: events[ehead:]
	ehead  int
}

func (q *queue) len() int { return len(q.items) - q.head }

// compact moves the waiting messages to the front once the consumed ones
// take half the slice, so that a queue that never empties does not grow.
func (q *queue) compact() {
	if q.head < 32 || q.head < len(q.items)/2 {
		return
	}
	n := copy(q.items, q.items[q.head:])
	clear(q.items[n:])
	q.items, q.head = q.items[:n], 0
}

// lenLocked returns the number of waiting messages.
func (b *inbox) lenLocked() int {
	if b.q == nil {
		return 0
	}
	return b.q.len()
}

// put queues in, within the count and byte bounds, or, with readOn, within
// the byte bound alone; a message is always taken when none waits. When it
// does not fit, it returns the channel that is closed once that may have
// changed, and whether a handler is running. start tells the caller to
// start a dispatcher. After stop, messages are dropped (the server sends
// unacknowledged ones again on a persistent session).
//
// A message put after stop or end is dropped: dropped reports it.
func (b *inbox) put(in *inbound, readOn bool, size int, maxBytes int64) (queued, start, busy, dropped bool, wake <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.ended {
		return true, false, false, true, nil
	}
	n := b.lenLocked()
	if n == 0 || (readOn || n < size) && b.bytes+in.size <= maxBytes {
		if b.q == nil {
			b.q = new(queue)
		}
		b.q.compact()
		b.q.items = append(b.q.items, *in)
		b.bytes += in.size
		b.waiting.Store(false)
		return true, b.startLocked(), false, false, nil
	}
	b.waiting.Store(true)
	return false, false, b.busy.Load(), false, b.room.waitLocked()
}

// post queues a callback to run on the dispatcher, ahead of waiting
// messages; it reports whether to start a dispatcher. Callbacks run after
// stop and end too; once no dispatcher will start again (quiet) it queues
// nothing and reports inline: the caller runs f itself.
func (b *inbox) post(f func()) (start, inline bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.quiet {
		return false, true
	}
	// Ahead of the waiting messages, in order.
	if b.q == nil {
		b.q = new(queue)
	}
	b.q.events = append(b.q.events, f)
	return b.startLocked(), false
}

func (b *inbox) startLocked() bool {
	if b.running {
		return false
	}
	b.running = true
	return true
}

// next returns the next callback or message for the dispatcher, marking it
// busy; ok is false when there is none (the dispatcher then ends) or the
// inbox is stopped, and last tells that no dispatcher will start again
// (see end).
func (b *inbox) next() (in inbound, f func(), ok, last bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.q != nil && b.q.ehead < len(b.q.events):
		q := b.q
		f = q.events[q.ehead]
		q.events[q.ehead] = nil
		q.ehead++
		if q.ehead == len(q.events) {
			q.events, q.ehead = nil, 0
			if q.len() == 0 {
				b.q = nil
			}
		}
		b.busy.Store(true)
		b.room.notifyLocked()
		return in, f, true, false
	case b.stopped:
	case b.lenLocked() > 0:
		q := b.q
		in = q.items[q.head]
		q.items[q.head] = inbound{}
		q.head++
		b.bytes -= in.size
		if q.head == len(q.items) {
			q.head = 0
			q.items = q.items[:0]
			if cap(q.items) > 64 {
				q.items = nil // a burst is over: let its memory go
			}
			if len(q.events) == 0 && q.items == nil {
				b.q = nil
			}
		}
		b.busy.Store(true)
		b.room.notifyLocked()
		return in, nil, true, false
	}
	b.running = false
	if b.ended && !b.quiet {
		b.quiet = true
		return in, nil, false, true
	}
	return in, nil, false, false
}

// idle marks the dispatcher as no longer running user code.
func (b *inbox) idle() { b.busy.Store(false) }

// nudge wakes a reader that holds back, because a request was written: it
// may have to read on (see Options.InboxSize).
func (b *inbox) nudge() {
	if !b.waiting.Load() {
		return
	}
	b.mu.Lock()
	b.room.notifyLocked()
	b.mu.Unlock()
}

// end marks that nothing more will be put: the dispatcher delivers what is
// queued (unless stopped) and ends. Either end or the dispatcher's last
// next reports that no dispatcher runs or will start again, exactly once.
func (b *inbox) end() (last bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = true
	if !b.running && !b.quiet {
		b.quiet = true
		return true
	}
	return false
}

// stop drops the messages queued; the dispatcher ends after the handler it
// is running, if any, and the callbacks queued (OnDrop, which must hear of
// every drop). It returns the identifiers of the new QoS 2 messages it
// dropped, which were never handled.
func (b *inbox) stop() (unhandled []uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.q; q != nil {
		for _, in := range q.items[q.head:] {
			if in.record {
				unhandled = append(unhandled, in.id)
			}
		}
		// The callbacks (OnDrop) still run.
		q.items, q.head = nil, 0
		if q.ehead == len(q.events) {
			b.q = nil
		}
	}
	b.stopped = true
	b.bytes = 0
	b.room.notifyLocked()
	return unhandled
}

// counts returns the number and bytes of waiting messages and callbacks.
func (b *inbox) counts() (int, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lenLocked(), b.bytes
}
