package client

import "sync/atomic"

// State is where a Client or Session stands in its life.
type State int32

const (
	// StateConnecting: a connection attempt is under way (the Session's
	// first, or any after a wait), or the connection is up and a Session
	// is restoring its subscriptions before it calls OnConnect.
	StateConnecting State = iota
	// StateConnected: the connection is up; for a Session, with its
	// subscriptions restored.
	StateConnected
	// StateWaiting: a Session has no connection and waits before its next
	// attempt (LastError tells why the last one ended).
	StateWaiting
	// StateClosed: the Client or Session has ended, by Disconnect or Close,
	// by a connection loss (Client), or by a refusal that its policy does
	// not retry (Session); Err tells which.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateWaiting:
		return "waiting to reconnect"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// connState is the life of one network connection.
type connState uint8

const (
	connUp      connState = iota // after CONNACK: packets flow both ways
	connClosing                  // DISCONNECT is queued: nothing more is queued after it [MQTT-3.14.4-2]
	connClosed                   // the network connection is closed
)

// closedChan is a closed channel, returned for events that have fired
// before anybody asked to wait for them.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// event is a one-time signal whose channel is made only when somebody
// waits for it before it fires: a client keeps several, and most are never
// waited for. It takes one word.
type event struct{ ch atomic.Pointer[chan struct{}] }

// firedEvent marks an event that has fired.
var firedEvent = &closedChan

// wait returns a channel that is closed once the event has fired.
func (e *event) wait() <-chan struct{} {
	for {
		switch p := e.ch.Load(); p {
		case firedEvent:
			return closedChan
		case nil:
			ch := make(chan struct{})
			if e.ch.CompareAndSwap(nil, &ch) {
				return ch
			}
		default:
			return *p
		}
	}
}

// fire fires the event, once; it reports whether this call did.
func (e *event) fire() bool {
	p := e.ch.Swap(firedEvent)
	if p == firedEvent {
		return false
	}
	if p != nil {
		close(*p)
	}
	return true
}

// done reports whether the event has fired.
func (e *event) done() bool { return e.ch.Load() == firedEvent }

// broadcast wakes every waiter each time it is notified. Its owner's lock
// guards it: waiters take the channel under that lock, then wait without
// it, and check their condition again once woken.
type broadcast struct{ ch chan struct{} }

// waitLocked returns the channel the next notify closes.
func (b *broadcast) waitLocked() <-chan struct{} {
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// notifyLocked wakes the current waiters, if any.
func (b *broadcast) notifyLocked() {
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
