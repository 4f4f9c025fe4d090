package client

import (
	"strings"
	"sync"

	"github.com/devicemq/mqtt/packet"
)

// inbound is a received PUBLISH on its way to the dispatcher.
type inbound struct {
	msg     Message
	deliver bool        // false for a QoS 2 duplicate: acknowledge only
	ack     packet.Type // PUBACK, PUBREC, or 0 for QoS 0
	id      uint16
	from    *conn // the connection it came on, which the acknowledgement goes to
}

// inbox is the queue between the reader and the dispatcher. It holds up to
// size messages before the reader waits for room, so that a flood of
// messages meets back-pressure at the socket instead of filling memory. The
// reader does not wait while one of the client's own requests awaits an
// acknowledgement, a PINGREQ included: that acknowledgement may be behind
// the messages still to be read, and the request may come from a handler,
// which would otherwise wait for the reader while the reader waits for it.
type inbox struct {
	size  int
	mu    sync.Mutex
	items []inbound // waiting messages are items[head:]
	head  int
	ended bool // the reader has ended: nothing more will be put
	// stopped: the client was closed by its user; what is still queued is
	// dropped (unacknowledged QoS 1 and 2 messages are the server's to
	// re-send) and no handler starts any more.
	stopped bool
	ready   chan struct{} // capacity 1: wakes the dispatcher
	room    chan struct{} // capacity 1: wakes the reader
}

func newInbox(size int) *inbox {
	return &inbox{size: size, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// full reports whether the reader should wait before putting more.
func (b *inbox) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items)-b.head >= b.size && !b.stopped
}

// put queues in without waiting.
func (b *inbox) put(in inbound) {
	b.mu.Lock()
	if !b.stopped {
		b.items = append(b.items, in)
	}
	b.mu.Unlock()
	signal(b.ready)
}

// end marks that the reader will put nothing more.
func (b *inbox) end() {
	b.mu.Lock()
	b.ended = true
	b.mu.Unlock()
	signal(b.ready)
}

// stop drops what is queued; the dispatcher returns after the handler it is
// running, if any.
func (b *inbox) stop() {
	b.mu.Lock()
	b.stopped = true
	clear(b.items)
	b.items, b.head = nil, 0
	b.mu.Unlock()
	signal(b.ready)
	signal(b.room)
}

// get waits for the next message; ok is false once the inbox is stopped, or
// ended and empty.
func (b *inbox) get() (in inbound, ok bool) {
	for {
		b.mu.Lock()
		if b.stopped {
			b.mu.Unlock()
			return in, false
		}
		if b.head < len(b.items) {
			in = b.items[b.head]
			b.items[b.head] = inbound{}
			b.head++
			if b.head == len(b.items) {
				b.head = 0
				b.items = b.items[:0]
				if cap(b.items) > 4*b.size {
					b.items = nil // a burst is over: let its memory go
				}
			}
			b.mu.Unlock()
			signal(b.room)
			return in, true
		}
		if b.ended {
			b.mu.Unlock()
			return in, false
		}
		b.mu.Unlock()
		<-b.ready
	}
}

// dispatch runs handlers in arrival order and sends each QoS 1 or 2
// acknowledgement after the handler returns, on the connection the message
// came on, so acknowledgements go out in the order the messages arrived
// [MQTT-4.6.0-2], [MQTT-4.6.0-3]; one for a connection that has ended is
// dropped (the server re-sends the message). It returns once the inbox has
// ended and is empty, or is stopped.
func (c *core) dispatch() {
	var handlers []Handler
	for {
		in, ok := c.inbox.get()
		if !ok {
			return
		}
		if in.deliver {
			handlers = c.handlersFor(in.msg.Topic, handlers[:0])
			for _, h := range handlers {
				h(in.msg)
			}
		}
		if in.ack != 0 {
			in.from.sendAck(in.ack, in.id)
		}
	}
}

// route is a granted subscription's filter and handler.
type route struct {
	filter  string // as subscribed
	match   string // the filter messages are matched against: without a $share/{group}/ prefix
	qos     byte   // as requested, for subscribing again
	handler Handler
}

func newRoute(s Subscription) route {
	r := route{filter: s.Filter, match: s.Filter, qos: s.QoS, handler: s.Handler}
	// A shared subscription $share/{group}/{filter} (mosquitto and others
	// accept it in 3.1.1) delivers messages whose topic matches {filter}.
	if rest, ok := strings.CutPrefix(s.Filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			r.match = f
		}
	}
	return r
}

// handlersFor appends to hs the handlers of the subscriptions whose filters
// match topic, each once; subscriptions without a handler, and topics that
// match none, get Options.DefaultHandler, once.
func (c *core) handlersFor(topic string, hs []Handler) []Handler {
	useDefault := true
	c.mu.Lock()
	for _, r := range c.routes {
		if MatchTopic(r.match, topic) {
			if r.handler != nil {
				hs = append(hs, r.handler)
				useDefault = false
			}
		}
	}
	for _, r := range c.routes {
		if r.handler == nil && MatchTopic(r.match, topic) {
			useDefault = true
		}
	}
	c.mu.Unlock()
	if useDefault && c.opts.DefaultHandler != nil {
		hs = append(hs, c.opts.DefaultHandler)
	}
	return hs
}
