package client

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemq/mqtt/netx"
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

	// OnConnect, if not nil, is called after each successful connection,
	// with the CONNACK's session present flag; OnConnectionLost when a
	// connection ends other than by Disconnect or Close; OnConnectError
	// when an attempt fails. They run on the Session's own goroutine and
	// should return quickly.
	OnConnect        func(sessionPresent bool)
	OnConnectionLost func(err error)
	OnConnectError   func(err error)
}

// A Session is an MQTT client that keeps its session [MQTT-4.1.0-1] across
// connections: it connects in the background, reconnects with backoff
// whenever the connection is lost, and restores what the connection loss
// would lose. When the server resumed the session (clean session 0,
// session present 1), unacknowledged messages go out again with DUP and
// their packet identifiers, in their original order [MQTT-4.4.0-1],
// [MQTT-4.6.0-1]. When it did not (session present 0), every subscription
// is made again and every message not yet acknowledged is sent afresh: a
// message accepted by Publish is never dropped.
//
// While there is no connection, QoS 0 Publish fails at once with
// ErrNotConnected, QoS 1 and 2 Publish accept messages into the store
// (bounded by Options.MaxPending) and send them once connected, and
// Subscribe and Unsubscribe wait for a connection within their context.
//
// A Session is safe for concurrent use. Its goroutines are its supervisor,
// the handler dispatcher, and the current connection's reader and writer.
type Session struct {
	core     *core
	d        netx.Dialer
	opts     SessionOptions
	template packet.Connect

	ctx     context.Context // ended by Disconnect
	stop    context.CancelFunc
	stopc   <-chan struct{} // ctx.Done()
	stopped sync.Once
	current atomic.Pointer[conn]
	done    chan struct{}
	left    atomic.Int32
}

// NewSession returns a Session that connects through d and starts its
// first connection attempt at once. opts (nil means zero SessionOptions)
// is copied. It fails only for invalid options (ErrInvalidOptions, a nil
// d included) or an unreadable Store.
func NewSession(d netx.Dialer, opts *SessionOptions) (*Session, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil dialer", ErrInvalidOptions)
	}
	var so SessionOptions
	if opts != nil {
		so = *opts
	}
	o, connect, err := so.Options.normalize()
	if err != nil {
		return nil, err
	}
	so.Options = o
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
	c, err := newCore(o, false)
	if err != nil {
		return nil, err
	}
	s := &Session{core: c, d: d, opts: so, template: *connect, done: make(chan struct{})}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.stopc = s.ctx.Done()
	s.left.Store(2)
	go func() {
		s.supervise()
		s.exit()
	}()
	go func() {
		c.dispatch()
		s.exit()
	}()
	return s, nil
}

func (s *Session) exit() {
	if s.left.Add(-1) == 0 {
		close(s.done)
	}
}

// supervise connects, waits for the connection to end, and connects again,
// until Disconnect.
func (s *Session) supervise() {
	ctx := s.ctx
	backoff := s.opts.MinBackoff
	for first := true; ; first = false {
		if !first && !s.sleep(backoff) {
			return
		}
		cn, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log().Warn("mqtt connect failed", slog.Any("error", err), slog.Duration("retry_in", backoff))
			if s.opts.OnConnectError != nil {
				s.opts.OnConnectError(err)
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
			continue
		}
		up := time.Now()
		select {
		case <-cn.done:
		case <-s.stopc:
			<-cn.done // Disconnect ends it
			return
		}
		if cn.err != ErrClosed && s.opts.OnConnectionLost != nil {
			s.opts.OnConnectionLost(cn.err)
		}
		if time.Since(up) >= s.opts.StableAfter {
			backoff = s.opts.MinBackoff
		} else {
			backoff = min(2*backoff, s.opts.MaxBackoff)
		}
	}
}

// sleep waits for a random time between d/2 and d; it reports false when
// the Session is stopped meanwhile.
func (s *Session) sleep(d time.Duration) bool {
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stopc:
		return false
	}
}

// connect makes one connection and brings the session back onto it.
func (s *Session) connect(ctx context.Context) (*conn, error) {
	connect := s.template
	if s.opts.Credentials != nil {
		user, pass, err := s.opts.Credentials(ctx)
		if err != nil {
			return nil, fmt.Errorf("mqtt: credentials: %w", err)
		}
		connect.UsernameFlag, connect.Username = user != "", []byte(user)
		connect.PasswordFlag, connect.Password = user != "" && pass != nil, pass
		if err := checkConnect(&connect, s.core.opts.MaxPacketSize); err != nil {
			return nil, fmt.Errorf("mqtt: credentials: %w", err)
		}
	}
	cn, err := dialConn(ctx, s.core, s.d, &connect)
	if err != nil {
		return nil, err
	}
	restore := s.core.attach(cn, cn.sessionPresent)
	s.current.Store(cn)
	cn.start()
	select {
	case <-s.stopc:
		// Disconnect ran meanwhile and did not see this connection.
		cn.disconnect()
	default:
	}
	if s.opts.OnConnect != nil {
		s.opts.OnConnect(cn.sessionPresent)
	}
	// The server kept no session: subscribe again, one filter per
	// SUBSCRIBE (IoT Hub takes no more), without waiting for the SUBACKs.
	for _, sub := range restore {
		r := &request{kind: packet.SUBSCRIBE, subs: []Subscription{sub}, done: make(chan struct{}), on: cn}
		if err := s.core.register(ctx, r); err != nil {
			break
		}
		p := &packet.Subscribe{PacketID: r.id, Subscriptions: []packet.Subscription{{Filter: []byte(sub.Filter), QoS: sub.QoS}}}
		if err := cn.send(ctx, p); err != nil {
			s.core.unregister(r)
			break
		}
	}
	return cn, nil
}

func (s *Session) log() *slog.Logger { return s.core.log }

// WaitConnected waits until the Session has a connection, or ctx ends (an
// error wrapping ctx.Err()) or the Session is closed (ErrClosed).
func (s *Session) WaitConnected(ctx context.Context) error {
	_, err := s.core.connection(ctx)
	return err
}

// ClientID returns the client identifier, generated when
// Options.ClientID was empty.
func (s *Session) ClientID() string { return s.core.opts.ClientID }

// Done returns a channel that is closed after Disconnect or Close, once all
// of the Session's goroutines have exited, a running handler included.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the Session runs, and ErrClosed after Disconnect or
// Close. The errors of individual connections go to OnConnectionLost and
// OnConnectError.
func (s *Session) Err() error {
	s.core.mu.Lock()
	defer s.core.mu.Unlock()
	return s.core.err
}

// Stats returns the Session's counters.
func (s *Session) Stats() Stats { return s.core.snapshot() }

// Publish sends m as Client.Publish does, over whatever connection the
// Session has when the message can go out. A QoS 1 or 2 message accepted
// while there is no connection is sent once there is one; Publish waits
// for its acknowledgement across connections, within ctx. A QoS 0 message
// needs a connection: without one Publish returns ErrNotConnected.
func (s *Session) Publish(ctx context.Context, m Message) error { return s.core.publish(ctx, m) }

// Subscribe is Client.Subscribe, waiting for a connection first. The
// subscription is made again on later connections when the server has not
// kept the session.
func (s *Session) Subscribe(ctx context.Context, subs ...Subscription) ([]packet.SubackCode, error) {
	return s.core.subscribe(ctx, subs)
}

// Unsubscribe is Client.Unsubscribe, waiting for a connection first.
func (s *Session) Unsubscribe(ctx context.Context, filters ...string) error {
	return s.core.unsubscribe(ctx, filters)
}

// Disconnect stops reconnecting, sends DISCONNECT on the current
// connection, if any, after what is queued, and closes it, as
// Client.Disconnect does. Messages accepted and not yet acknowledged stay
// in the Store; their Publish calls return ErrConnectionLost. Without a
// Store, those never written are dropped and their Publish calls return
// ErrNotSent (and ErrClosed), like calls that wait for room
// (MaxPending) or for a connection. It is
// idempotent; when ctx ends first the connection is closed at once and the
// error wraps ctx.Err().
//
// Disconnect does not wait for the Session's callbacks (OnConnect,
// OnConnectError, OnConnectionLost) and handlers, which may call it
// themselves: one may still run until Done is closed, so wait for Done
// before tearing down what they use.
func (s *Session) Disconnect(ctx context.Context) error {
	var err error
	s.stopped.Do(func() {
		s.core.close(ErrClosed)
		s.stop()
		if cn := s.current.Load(); cn != nil {
			cn.disconnect()
			select {
			case <-cn.done:
			case <-ctx.Done():
				cn.shutdown(ErrClosed)
				<-cn.done
				err = fmt.Errorf("mqtt: disconnect: %w", ctx.Err())
			}
		}
		lost := fmt.Errorf("%w (the session was closed; the message stays in the Store)", ErrConnectionLost)
		if s.opts.Store == nil {
			lost = fmt.Errorf("%w (the session was closed)", ErrConnectionLost)
		}
		s.core.failPending(lost)
		s.core.inbox.stop()
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
