package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemq/mqtt/internal/redact"
	"github.com/devicemq/mqtt/packet"
)

// Defaults for zero SessionOptions fields.
const (
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultStableAfter = 30 * time.Second
)

// SessionOptions configures a Session: the Options of its connections, and
// how it reconnects.
type SessionOptions struct {
	Options

	// Credentials, if not nil, gives the user name and password for each
	// connection attempt, instead of Options.Username and Password: IoT
	// Hub's signatures expire, so they are made anew every time.
	Credentials func(ctx context.Context) (username string, password []byte, err error)

	// MinBackoff and MaxBackoff bound the wait before a new connection
	// attempt: it starts at MinBackoff, doubles after every failed attempt
	// up to MaxBackoff, and is drawn at random between half and all of
	// that (jitter), so that a fleet does not reconnect in step. Zero or
	// negative means DefaultMinBackoff (1 s) and DefaultMaxBackoff (1 min);
	// a MaxBackoff below MinBackoff is raised to it. IoT Hub accepts one
	// CONNECT per device every 5 s.
	MinBackoff, MaxBackoff time.Duration

	// StableAfter is how long a connection must last for the wait to start
	// again from MinBackoff when it ends. Zero or negative means
	// DefaultStableAfter (30 s).
	StableAfter time.Duration

	// RetryRefused decides what the Session does when the server refuses a
	// connection permanently (ConnackError.Permanent: CONNACK return code
	// 1, 2, 4 or 5; a bad password does not get better by itself, and a
	// hub may block a device that keeps trying). Nil, the default, stops
	// the Session: Err returns the refusal (errors.As finds the
	// *ConnackError), State is StateClosed, Done is closed, and waiting
	// calls end as after Disconnect. Otherwise RetryRefused is called with
	// the refusal and the number of permanent refusals since the last
	// successful connection (1, 2, ...; other failures in between do not
	// reset it), and returns how long to wait before the next attempt, or a
	// negative duration to stop as nil would. Return code 3 (server
	// unavailable) and every other failure are retried with the backoff
	// above.
	RetryRefused func(err *ConnackError, refusals int) time.Duration

	// OnConnect, if not nil, is called after each successful connection,
	// with the CONNACK's session present flag, once the subscriptions the
	// server did not keep are made again (their SUBACKs received), so that
	// it may publish requests whose answers come on them. OnConnectionLost
	// is called when a connection ends other than by Disconnect or Close;
	// OnConnectError when an attempt fails. They run one at a time, in
	// order, on a goroutine of their own (which exists only while they
	// run), so they may call the Session, Publish at QoS 1 or 2 included
	// (which waits for its acknowledgement while the Session goes on
	// reconnecting), and wait for messages their handlers get. When they
	// fall behind, the calls of one callback still waiting merge into one,
	// with the latest argument, in the place of the latest call (so the
	// last to run tells the latest state): at most three wait at any time.
	// Done is closed once they have returned.
	OnConnect        func(sessionPresent bool)
	OnConnectionLost func(err error)
	OnConnectError   func(err error)
}

// A Session is an MQTT client that keeps its session [MQTT-4.1.0-1] across
// connections: it connects in the background, reconnects with backoff
// whenever the connection is lost, and restores what the connection loss
// would lose. When the server resumed the session (a persistent session,
// session present 1), unacknowledged messages go out again with DUP and
// their packet identifiers, in their original order [MQTT-4.4.0-1],
// [MQTT-4.6.0-1]. When it did not (session present 0), every subscription
// is made again, one filter per SUBSCRIBE, before OnConnect and before the
// pending messages go out as new messages (without DUP) [MQTT-3.3.1-1]: a
// message accepted by Publish is never dropped unless Options.MaxAttempts,
// Message.Expires or Discard say so.
//
// While there is no connection, QoS 0 Publish fails at once with
// ErrNotConnected, QoS 1 and 2 Publish and Enqueue accept messages
// (bounded by Options.MaxPending and MaxPendingBytes) and send them once
// connected, and Subscribe and Unsubscribe wait for a connection within
// their context.
//
// A Session is safe for concurrent use. An idle Session runs two
// goroutines: its supervisor and the current connection's reader; a writer,
// a handler dispatcher and a callback goroutine run while there is
// something to write, handle or call back.
type Session struct {
	c        core
	d        Dialer
	opts     SessionOptions
	template packet.Connect

	connectTimeout time.Duration

	stopped event // Disconnect was called, or the Session stopped itself
	ctx     context.Context
	cancel  context.CancelFunc // ends ctx when stopped
	current atomic.Pointer[conn]

	mu        sync.Mutex
	cb        [3]pendingCallback // callbacks waiting to run
	cbOrder   []int              // their kinds, in the order they came
	cbRunning bool               // the callback goroutine runs
	cbDone    broadcast          // it ended
	state     State
	changed   broadcast // state changed
	lastErr   error
	err       error // why it ended; nil while it runs

	stopOnce sync.Once
}

// NewSession returns a Session that connects through d and starts its
// first connection attempt at once. opts (nil means zero SessionOptions)
// is copied. It fails only for invalid options (ErrInvalidOptions, a nil
// d included) or an unreadable Store.
func NewSession(d Dialer, opts *SessionOptions) (*Session, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil dialer", ErrInvalidOptions)
	}
	var so SessionOptions
	if opts != nil {
		so = *opts
	}
	cfg, connect, err := so.Options.normalize()
	if err != nil {
		return nil, err
	}
	if so.MinBackoff <= 0 {
		so.MinBackoff = DefaultMinBackoff
	}
	if so.MaxBackoff <= 0 {
		so.MaxBackoff = DefaultMaxBackoff
	}
	so.MaxBackoff = max(so.MaxBackoff, so.MinBackoff)
	if so.StableAfter <= 0 {
		so.StableAfter = DefaultStableAfter
	}
	so.Options = Options{} // the config keeps what is needed; the password goes
	s := &Session{d: d, opts: so, template: *connect}
	s.connectTimeout = cfg.dialTimeout()
	if err := s.c.init(cfg, false); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.supervise()
	return s, nil
}

func (s *Session) log() *slog.Logger { return s.c.cfg.log }

// supervise connects, waits for the connection to end, and connects again,
// until Disconnect or a refusal its policy does not retry.
func (s *Session) supervise() {
	defer func() {
		s.waitCallbacks()
		s.c.end()
		s.c.quiet()
	}()
	stop := s.stopped.wait()
	backoff := s.opts.MinBackoff
	wait := time.Duration(0)
	refusals := 0
	for {
		if wait > 0 {
			s.setState(StateWaiting)
			if !s.sleep(wait, stop) {
				return
			}
		}
		s.setState(StateConnecting)
		cn, err := s.connect()
		if err != nil {
			if s.stopped.done() {
				return
			}
			s.setLastErr(err)
			var ce *ConnackError
			if errors.As(err, &ce) && ce.Permanent() {
				refusals++
				d := time.Duration(-1)
				if s.opts.RetryRefused != nil {
					d = s.opts.RetryRefused(ce, refusals)
				}
				if d < 0 {
					s.log().Warn("mqtt connection refused: the session stops", slog.Any("error", err))
					s.callback(cbConnectError, false, err)
					s.end(err)
					return
				}
				wait = max(d, time.Nanosecond)
			} else {
				wait = jitter(backoff)
				backoff = min(2*backoff, s.opts.MaxBackoff)
			}
			s.log().Warn("mqtt connect failed", slog.Any("error", err), slog.Duration("retry_in", wait))
			s.callback(cbConnectError, false, err)
			continue
		}
		refusals = 0
		up := time.Now()
		if s.restore(cn, stop) {
			s.setState(StateConnected)
			s.callback(cbConnect, cn.sessionPresent, nil)
		}
		if !cn.waitDone(stop) {
			cn.waitDone(nil) // Disconnect ends it
			return
		}
		if cn.error() != ErrClosed {
			s.setLastErr(cn.error())
			s.callback(cbConnectionLost, false, cn.error())
		}
		if s.stopped.done() {
			return
		}
		if time.Since(up) >= s.opts.StableAfter {
			backoff = s.opts.MinBackoff
		}
		wait = jitter(backoff)
		backoff = min(2*backoff, s.opts.MaxBackoff)
	}
}

// jitter returns a random duration between d/2 and d.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

// sleep waits for d; it reports false when the Session stops meanwhile.
func (s *Session) sleep(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// The Session's callbacks, as indexes of Session.cb.
const (
	cbConnect = iota
	cbConnectionLost
	cbConnectError
)

// pendingCallback is a callback waiting to run, with its latest argument.
type pendingCallback struct {
	waiting bool
	sp      bool
	err     error
}

// callback has callback kind called with sp or err, on the callback
// goroutine, after those waiting before it; a call of the same kind still
// waiting merges into this one: it takes the new argument and moves to the
// end, so that the last callback run tells the latest state.
func (s *Session) callback(kind int, sp bool, err error) {
	switch {
	case kind == cbConnect && s.opts.OnConnect == nil,
		kind == cbConnectionLost && s.opts.OnConnectionLost == nil,
		kind == cbConnectError && s.opts.OnConnectError == nil:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pc := &s.cb[kind]
	pc.sp, pc.err = sp, err
	if pc.waiting {
		s.cbOrder = slices.DeleteFunc(s.cbOrder, func(k int) bool { return k == kind })
	}
	pc.waiting = true
	s.cbOrder = append(s.cbOrder, kind)
	if !s.cbRunning {
		s.cbRunning = true
		go s.runCallbacks()
	}
}

// runCallbacks is the callback goroutine: it runs the waiting callbacks in
// order, and ends when none waits.
func (s *Session) runCallbacks() {
	for {
		s.mu.Lock()
		if len(s.cbOrder) == 0 {
			s.cbRunning = false
			s.cbDone.notifyLocked()
			s.mu.Unlock()
			return
		}
		kind := s.cbOrder[0]
		s.cbOrder = s.cbOrder[1:]
		pc := &s.cb[kind]
		sp, err := pc.sp, pc.err
		pc.waiting, pc.err = false, nil
		s.mu.Unlock()
		switch kind {
		case cbConnect:
			s.opts.OnConnect(sp)
		case cbConnectionLost:
			s.opts.OnConnectionLost(err)
		default:
			s.opts.OnConnectError(err)
		}
	}
}

// waitCallbacks waits for the callback goroutine to end.
func (s *Session) waitCallbacks() {
	s.mu.Lock()
	for s.cbRunning {
		wake := s.cbDone.waitLocked()
		s.mu.Unlock()
		<-wake
		s.mu.Lock()
	}
	s.mu.Unlock()
}

// setState moves the Session to st, unless it is closed.
func (s *Session) setState(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateClosed {
		return
	}
	s.state = st
	s.changed.notifyLocked()
}

// closeState records the end of the Session with err.
func (s *Session) closeState(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.err = StateClosed, err
	s.changed.notifyLocked()
}

func (s *Session) setLastErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// connect makes one connection and attaches it to the session.
func (s *Session) connect() (*conn, error) {
	ctx := s.ctx
	connect := s.template
	if s.opts.Credentials != nil {
		user, pass, err := s.opts.Credentials(ctx)
		if err != nil {
			return nil, fmt.Errorf("mqtt: credentials: %w", err)
		}
		connect.UsernameFlag, connect.Username = user != "", []byte(user)
		connect.PasswordFlag, connect.Password = user != "" && pass != nil, pass
		if err := checkConnect(&connect, int(s.c.cfg.maxPacket)); err != nil {
			return nil, fmt.Errorf("mqtt: credentials: %w", err)
		}
	}
	cn, err := dialConn(ctx, &s.c, s.d, &connect, s.connectTimeout, nil)
	if err != nil {
		return nil, err
	}
	// Made current under s.mu, where Disconnect looks: either Disconnect
	// sees this connection and waits for it (its reader starts below), or
	// the connection sees the Session closed and is not used.
	s.mu.Lock()
	if s.state == StateClosed {
		s.mu.Unlock()
		cn.nc.Close()
		cn.releaseDecoder()
		return nil, errClosedNotSent
	}
	s.current.Store(cn)
	s.mu.Unlock()
	s.c.connected()
	if !cn.sessionPresent {
		s.c.forgetIn2()
	}
	s.c.apply(s.c.out.attach(cn, cn.sessionPresent, nil))
	cn.start()
	if s.stopped.done() {
		// Disconnect ran meanwhile and may not have seen this connection.
		cn.disconnect()
	}
	return cn, nil
}

// restore makes again, on cn, the subscriptions the server did not keep,
// one filter per SUBSCRIBE (IoT Hub takes no more), then lets the pending
// messages go: their answers may come on those subscriptions. It waits for
// the SUBACKs, and reports false when cn ended first or the Session
// stopped.
func (s *Session) restore(cn *conn, stop <-chan struct{}) bool {
	var reqs []*request
	resumed := false
	if !cn.sessionPresent {
		subs, gens := s.c.rt.all()
		for i, sub := range subs {
			r := &request{kind: packet.SUBSCRIBE, subs: []Subscription{sub}, done: make(chan struct{}, 1), noPool: true}
			r.gen.Store(gens[i])
			if !resumed && !s.c.out.idFree() {
				// Every packet identifier is taken (pending messages, with
				// MaxPending near 65,535): let the pending messages go, so
				// that their acknowledgements free some, rather than wait
				// for ever.
				s.log().Warn("mqtt: no packet identifier free to restore the subscriptions: pending messages go first")
				resumed = true
				s.c.apply(s.c.out.resumeAfterAttach(nil))
				cn.flush()
			}
			if s.reserveOn(cn, r) != nil {
				break
			}
			if !s.c.out.bind(r, cn) {
				s.c.out.unregister(r)
				break
			}
			p := &packet.Subscribe{PacketID: r.id, Subscriptions: []packet.Subscription{{Filter: bytesOf(sub.Filter), QoS: sub.QoS}}}
			if cn.send(s.ctx, p) != nil || !s.c.out.queuedOn(r, cn) {
				s.c.out.unregister(r)
				break
			}
			reqs = append(reqs, r)
		}
	}
	if !resumed {
		s.c.apply(s.c.out.resumeAfterAttach(nil))
		cn.flush()
	}
	closed := cn.waitClosed()
	for _, r := range reqs {
		select {
		case <-r.done:
			if r.err == nil && len(r.codes) == 1 && r.codes[0].Failed() {
				s.log().Warn("mqtt subscription not restored: the server refused it", slog.String("filter", r.subs[0].Filter))
			}
		case <-closed:
			return false
		case <-stop:
			return false
		}
	}
	return !cn.isClosed()
}

// reserveOn waits for a packet identifier for r while cn lasts and the
// Session runs.
func (s *Session) reserveOn(cn *conn, r *request) error {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel() // ends the goroutine below
	go func() {
		select {
		case <-cn.waitClosed():
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.c.out.reserveID(ctx, r)
}

// end stops the Session from its own goroutine with err.
func (s *Session) end(err error) {
	s.stopOnce.Do(func() {
		s.closeState(err)
		s.stopped.fire()
		s.cancel()
		s.c.close(err)
		s.c.stopInbox()
	})
}

// WaitConnected waits until the Session is connected, its subscriptions
// restored (StateConnected), or ctx ends (an error wrapping ctx.Err() and
// ErrNotSent, and LastError when there is one, so that errors.As finds a
// *ConnackError), or the Session ends (an error wrapping Err: ErrClosed, or
// the refusal that stopped it).
func (s *Session) WaitConnected(ctx context.Context) error {
	s.mu.Lock()
	for {
		switch s.state {
		case StateConnected:
			s.mu.Unlock()
			return nil
		case StateClosed:
			err := s.err
			s.mu.Unlock()
			return fmt.Errorf("mqtt: session ended: %w", err)
		}
		wake := s.changed.waitLocked()
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			if last := s.LastError(); last != nil {
				return fmt.Errorf("mqtt: waiting for a connection: %w: %w (last attempt: %w)", ErrNotSent, ctx.Err(), last)
			}
			return fmt.Errorf("mqtt: waiting for a connection: %w: %w", ErrNotSent, ctx.Err())
		}
		s.mu.Lock()
	}
}

// ClientID returns the client identifier, generated when
// Options.ClientID was empty.
func (s *Session) ClientID() string { return s.c.cfg.clientID }

// Done returns a channel that is closed after the Session ended (by
// Disconnect or Close, or a refusal RetryRefused does not retry), once all
// of its goroutines are done, a running handler included, with the same
// guarantees as Client.Done.
func (s *Session) Done() <-chan struct{} { return s.c.done.wait() }

// Err returns nil while the Session runs, ErrClosed after Disconnect or
// Close, and the refusal (a *ConnackError) when one stopped it. The errors
// of individual connections go to LastError, OnConnectionLost and
// OnConnectError.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// State returns where the Session stands: connecting, connected, waiting
// to reconnect, or closed.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// LastError returns why the last connection or connection attempt failed,
// or nil if none has: a dial or handshake error, a *ConnackError, or the
// error a connection was lost with. It is kept when a later connection
// succeeds.
func (s *Session) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Stats returns the Session's counters.
func (s *Session) Stats() Stats { return s.c.snapshot() }

// Publish sends m as Client.Publish does, over whatever connection the
// Session has when the message can go out, and waits for its
// acknowledgement across connections, within ctx. A QoS 1 or 2 message
// accepted while there is no connection is sent once there is one; if ctx
// ends before it was written, it is withdrawn (ErrNotSent). A QoS 0 message
// needs a connection: without one Publish returns ErrNotConnected.
func (s *Session) Publish(ctx context.Context, m Message) error { return s.c.publish(ctx, m, true) }

// Enqueue accepts a QoS 1 or 2 message for sending and returns once it is
// accepted, within ctx: it has a packet identifier and is in the Store
// (with a FileStore, on disk), and the Session sends it, again after
// reconnects and restarts, until the server acknowledges it or it is
// dropped (Options.OnDrop tells; Message.Expires, Options.MaxAttempts and
// Discard drop it). This is store and forward: the caller does not wait for
// the network. Errors are those of Publish before acceptance (ErrNotSent,
// packet.ErrInvalid, packet.ErrPacketTooLarge); a QoS 0 message is sent as
// Publish sends it.
func (s *Session) Enqueue(ctx context.Context, m Message) error {
	return s.c.publish(ctx, m, false)
}

// Subscribe is Client.Subscribe, waiting for a connection first. The
// subscription is made again on later connections when the server has not
// kept the session.
func (s *Session) Subscribe(ctx context.Context, subs ...Subscription) ([]packet.SubackCode, error) {
	return s.c.subscribe(ctx, subs)
}

// Unsubscribe is Client.Unsubscribe, waiting for a connection first.
func (s *Session) Unsubscribe(ctx context.Context, filters ...string) error {
	return s.c.unsubscribe(ctx, filters)
}

// Discard is Client.Discard: it drops the pending messages match selects
// and returns how many.
func (s *Session) Discard(match func(Message) bool) int { return s.c.discard(match) }

// Disconnect stops reconnecting, sends DISCONNECT on the current
// connection, if any, after what is queued, and closes it, as
// Client.Disconnect does. Messages accepted and not yet acknowledged stay
// in the Store, and their Publish calls return ErrPending; without a
// Store, those written return ErrConnectionLost, and those never written
// are dropped and return ErrNotSent (and ErrClosed), like calls that wait
// for room or for a connection. It is idempotent; when ctx ends first the
// connection is closed at once and the error wraps ctx.Err().
//
// Once Done is closed, the Session calls its Store no more and the Store
// may be closed: a handler still running when Disconnect returns may yet
// record its QoS 2 message's packet identifier, as exactly-once delivery
// needs [MQTT-4.3.3-2].
//
// Disconnect does not wait for the Session's callbacks (OnConnect,
// OnConnectError, OnConnectionLost) and handlers, which may call it
// themselves: one may still run until Done is closed, so wait for Done
// before tearing down what they use.
func (s *Session) Disconnect(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		// Done waits for the outbox's close below: a call accepted
		// meanwhile makes its Store calls before Done.
		if s.c.enter() {
			defer s.c.exit()
		}
		s.closeState(ErrClosed)
		s.stopped.fire()
		s.cancel()
		s.mu.Lock()
		cn := s.current.Load()
		s.mu.Unlock()
		if cn != nil {
			cn.disconnect()
			if !cn.waitDone(ctx.Done()) {
				cn.shutdown(ErrClosed)
				cn.waitDone(nil)
				err = fmt.Errorf("mqtt: disconnect: %w", ctx.Err())
			}
		}
		s.c.close(ErrClosed)
		s.c.stopInbox()
	})
	return err
}

// Close is Disconnect waiting at most one second for DISCONNECT to be
// written.
func (s *Session) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.Disconnect(ctx)
}

// String formats o as Options.String does, the password redacted.
func (o SessionOptions) String() string {
	return redact.Struct(o, nil)
}

// GoString is String, for %#v.
func (o SessionOptions) GoString() string { return o.String() }

// LogValue implements slog.LogValuer with String's text.
func (o SessionOptions) LogValue() slog.Value { return slog.StringValue(o.String()) }
