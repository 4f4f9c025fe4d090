package client

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Tests of the recovery features: MaxAttempts, Discard, Message.Expires,
// Publish's outcome when its context ends, Enqueue, the refusal policy,
// State and LastError, and the clean session default. They run in
// testing/synctest bubbles over pipeBroker, where the Session's backoff
// waits pass at once.

// rcDrop is one call of Options.OnDrop.
type rcDrop struct {
	m   Message
	err error
}

// rcDrops collects the calls of Options.OnDrop. Make it inside the bubble.
type rcDrops struct{ ch chan rcDrop }

func newRCDrops() *rcDrops { return &rcDrops{ch: make(chan rcDrop, 64)} }

func (d *rcDrops) onDrop(m Message, err error) { d.ch <- rcDrop{m, err} }

// next returns the next drop reported, failing t when none comes within a
// minute of the bubble's time.
func (d *rcDrops) next(t *testing.T) rcDrop {
	t.Helper()
	select {
	case r := <-d.ch:
		return r
	case <-time.After(time.Minute):
		t.Fatal("OnDrop was not called")
		return rcDrop{}
	}
}

// none fails t when a drop was reported; call it once the bubble is idle.
func (d *rcDrops) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-d.ch:
		t.Errorf("OnDrop(%q, %v) was called, want no drop", r.m.Topic, r.err)
	default:
	}
}

// errOffline is what rcDialer returns while it fails.
var errOffline = errors.New("test: network unreachable")

// rcDialer counts dials and fails them while fail is set; otherwise it
// dials through d.
type rcDialer struct {
	d     Dialer
	fail  atomic.Bool
	dials atomic.Int32
}

func (r *rcDialer) Dial(ctx context.Context) (net.Conn, error) {
	r.dials.Add(1)
	if r.fail.Load() {
		return nil, errOffline
	}
	return r.d.Dial(ctx)
}

// rcSession starts a Session on d inside the current bubble, with short
// backoffs and keep alive off unless so says otherwise; it is closed, and
// its end waited for, when the test ends.
func rcSession(t *testing.T, d Dialer, so SessionOptions) *Session {
	t.Helper()
	if so.MinBackoff == 0 {
		so.MinBackoff = 10 * time.Millisecond
	}
	if so.MaxBackoff == 0 {
		so.MaxBackoff = 100 * time.Millisecond
	}
	if so.KeepAlive == 0 {
		so.KeepAlive = -1
	}
	s, err := NewSession(d, &so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); <-s.Done() })
	return s
}

// rcClose closes s and waits for its end.
func rcClose(t *testing.T, s *Session) {
	t.Helper()
	s.Close()
	select {
	case <-s.Done():
	case <-time.After(time.Minute):
		t.Fatal("the Session did not end after Close")
	}
}

// rcAccept takes the next connection of b, reads its CONNECT and answers
// CONNACK 0 with session present sp.
func rcAccept(t *testing.T, b *pipeBroker, sp bool) (*peer, *packet.Connect) {
	t.Helper()
	p := b.accept()
	c := p.expect(packet.CONNECT).(*packet.Connect).Clone()
	if c.CleanSession {
		sp = false
	}
	p.send(&packet.Connack{SessionPresent: sp})
	return p, c
}

type publisher interface {
	Publish(ctx context.Context, m Message) error
}

// rcPublish starts Publish of m on its own goroutine and waits for the
// bubble to be idle: m is accepted (or refused) when it returns.
func rcPublish(ctx context.Context, c publisher, m Message) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.Publish(ctx, m) }()
	synctest.Wait()
	return ch
}

// rcResult returns the result of a Publish started by rcPublish, failing t
// when it does not come within a minute of the bubble's time.
func rcResult(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("Publish %s did not return", what)
		return nil
	}
}

// rcExpectPublish reads the next packet, which must be a PUBLISH of topic,
// and returns a copy of it.
func rcExpectPublish(t *testing.T, p *peer, topic string) *packet.Publish {
	t.Helper()
	pub := p.expect(packet.PUBLISH).(*packet.Publish).Clone()
	if string(pub.Topic) != topic {
		t.Fatalf("PUBLISH of %q (id %d), want %q", pub.Topic, pub.PacketID, topic)
	}
	return pub
}

// rcDrain reads and drops what the client sends until the connection
// ends.
func rcDrain(p *peer) {
	for {
		if _, err := p.dec.Next(); err != nil {
			return
		}
	}
}

// rcLoad returns the outbound messages of st.
func rcLoad(t *testing.T, st Store) []StoredMessage {
	t.Helper()
	out, _, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rcTopics(ms []StoredMessage) []string {
	var ts []string
	for _, m := range ms {
		ts = append(ts, m.Topic)
	}
	return ts
}

// rcOpenStore opens the FileStore at path without fsync.
func rcOpenStore(t *testing.T, path string) *FileStore {
	t.Helper()
	fs, err := OpenFileStore(path, &FileStoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

// TestRecoveryPoisonMessage: a server that closes the connection each time
// it reads one message. With MaxAttempts 3 the message is dropped after
// the third connection that ended with it the oldest on the wire: its
// Publish returns ErrTooManyAttempts, OnDrop is told, and the messages
// behind it, which were on the wire each time too but are not counted,
// then go through (also surviving a connection loss of their own). With
// MaxAttempts 0 the message is sent first on every connection and never
// dropped.
func TestRecoveryPoisonMessage(t *testing.T) {
	t.Run("MaxAttempts=3", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			drops := newRCDrops()
			b := newPipeBroker(t)
			s := rcSession(t, b, SessionOptions{Options: Options{
				ClientID: "poison", PersistentSession: true, MaxAttempts: 3, OnDrop: drops.onDrop,
			}})
			// Accepted before the first connection, in this order.
			ctx := context.Background()
			poison := rcPublish(ctx, s, Message{Topic: "poison", Payload: []byte("bad"), QoS: 1})
			ok1 := rcPublish(ctx, s, Message{Topic: "ok1", Payload: []byte("1"), QoS: 1})
			ok2 := rcPublish(ctx, s, Message{Topic: "ok2", Payload: []byte("2"), QoS: 1})
			if n := s.Stats().Pending; n != 3 {
				t.Fatalf("Stats.Pending = %d, want 3", n)
			}
			for i := 1; i <= 3; i++ {
				p, _ := rcAccept(t, b, true)
				pub := rcExpectPublish(t, p, "poison")
				if i > 1 && !pub.DUP {
					t.Errorf("connection %d: re-sent PUBLISH without DUP", i)
				}
				p.conn.Close()
				if i < 3 {
					synctest.Wait()
					select {
					case err := <-poison:
						t.Fatalf("after %d connections Publish(poison) returned %v; want it dropped after 3", i, err)
					default:
					}
				}
			}
			err := rcResult(t, "poison", poison)
			if !errors.Is(err, ErrTooManyAttempts) || !errors.Is(err, ErrDropped) {
				t.Fatalf("Publish(poison) = %v, want ErrTooManyAttempts and ErrDropped", err)
			}
			d := drops.next(t)
			if d.m.Topic != "poison" || string(d.m.Payload) != "bad" || d.m.QoS != 1 || !errors.Is(d.err, ErrTooManyAttempts) {
				t.Errorf("OnDrop(%q, %q, QoS %d, %v), want poison, bad, 1, ErrTooManyAttempts", d.m.Topic, d.m.Payload, d.m.QoS, d.err)
			}
			if st := s.Stats(); st.Dropped != 1 || st.Pending != 2 {
				t.Errorf("Stats.Dropped = %d, Pending = %d; want 1 and 2 (ok1 and ok2, which were behind it on the wire, must not be counted)", st.Dropped, st.Pending)
			}

			// Connection 4: the poison is gone; ok1 comes first. The
			// connection ends once more: ok1 counts its first attempt
			// only (the three before were the poison's).
			p, _ := rcAccept(t, b, true)
			rcExpectPublish(t, p, "ok1")
			p.conn.Close()

			p, _ = rcAccept(t, b, true)
			pub := rcExpectPublish(t, p, "ok1")
			p.send(&packet.Puback{PacketID: pub.PacketID})
			pub = rcExpectPublish(t, p, "ok2")
			p.send(&packet.Puback{PacketID: pub.PacketID})
			if err := rcResult(t, "ok1", ok1); err != nil {
				t.Errorf("Publish(ok1) = %v", err)
			}
			if err := rcResult(t, "ok2", ok2); err != nil {
				t.Errorf("Publish(ok2) = %v", err)
			}
			synctest.Wait()
			if st := s.Stats(); st.Dropped != 1 || st.Pending != 0 {
				t.Errorf("Stats.Dropped = %d, Pending = %d; want 1 and 0", st.Dropped, st.Pending)
			}
			drops.none(t)
			rcClose(t, s)
		})
	})

	t.Run("MaxAttempts=0", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			drops := newRCDrops()
			b := newPipeBroker(t)
			s := rcSession(t, b, SessionOptions{Options: Options{
				ClientID: "poison0", PersistentSession: true, OnDrop: drops.onDrop,
			}})
			ctx := context.Background()
			poison := rcPublish(ctx, s, Message{Topic: "poison", Payload: []byte("bad"), QoS: 1})
			ok1 := rcPublish(ctx, s, Message{Topic: "ok1", QoS: 1})
			const conns = 10
			for range conns {
				p, _ := rcAccept(t, b, true)
				rcExpectPublish(t, p, "poison")
				p.conn.Close()
			}
			synctest.Wait()
			select {
			case err := <-poison:
				t.Fatalf("Publish(poison) returned %v after %d connections without MaxAttempts", err, conns)
			default:
			}
			if st := s.Stats(); st.Dropped != 0 || st.Pending != 2 {
				t.Errorf("Stats.Dropped = %d, Pending = %d; want 0 and 2", st.Dropped, st.Pending)
			}
			drops.none(t)
			// The server takes it at last.
			p, _ := rcAccept(t, b, true)
			pub := rcExpectPublish(t, p, "poison")
			p.send(&packet.Puback{PacketID: pub.PacketID})
			pub = rcExpectPublish(t, p, "ok1")
			p.send(&packet.Puback{PacketID: pub.PacketID})
			if err := rcResult(t, "poison", poison); err != nil {
				t.Errorf("Publish(poison) = %v", err)
			}
			if err := rcResult(t, "ok1", ok1); err != nil {
				t.Errorf("Publish(ok1) = %v", err)
			}
			rcClose(t, s)
		})
	})
}

// TestRecoveryReleasedNeverDropped: a QoS 2 message whose PUBREC came is
// the server's: however many connections end on its PUBREL, MaxAttempts
// does not drop it, and the PUBREL goes out again on each.
func TestRecoveryReleasedNeverDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drops := newRCDrops()
		b := newPipeBroker(t)
		s := rcSession(t, b, SessionOptions{Options: Options{
			ClientID: "released", PersistentSession: true, MaxAttempts: 2, OnDrop: drops.onDrop,
		}})
		q := rcPublish(context.Background(), s, Message{Topic: "q", QoS: 2})
		p, _ := rcAccept(t, b, true)
		pub := rcExpectPublish(t, p, "q")
		p.send(&packet.Pubrec{PacketID: pub.PacketID})
		p.expect(packet.PUBREL)
		p.conn.Close()
		for range 4 {
			p, _ = rcAccept(t, b, true)
			if rel := p.expect(packet.PUBREL).(*packet.Pubrel); rel.PacketID != pub.PacketID {
				t.Fatalf("PUBREL %d, want %d", rel.PacketID, pub.PacketID)
			}
			p.conn.Close()
		}
		p, _ = rcAccept(t, b, true)
		p.expect(packet.PUBREL)
		p.send(&packet.Pubcomp{PacketID: pub.PacketID})
		if err := rcResult(t, "q", q); err != nil {
			t.Errorf("Publish(q) = %v, want nil", err)
		}
		if n := s.Stats().Dropped; n != 0 {
			t.Errorf("Stats.Dropped = %d, want 0", n)
		}
		drops.none(t)
		rcClose(t, s)
	})
}

// TestRecoveryCloseIsNoAttempt: closing a Session while a message awaits
// its PUBACK is not a failed attempt of the message: Disconnect's contract
// is that accepted, unacknowledged messages stay in the Store and their
// Publish returns ErrPending. With MaxAttempts 1, the message must
// survive the Close and go out again from the next Session.
func TestRecoveryCloseIsNoAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		drops := newRCDrops()
		o := Options{ClientID: "close", PersistentSession: true, MaxAttempts: 1, Store: st, OnDrop: drops.onDrop}
		b := newPipeBroker(t)
		s := rcSession(t, b, SessionOptions{Options: o})
		p, _ := rcAccept(t, b, true)
		if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
		m := rcPublish(context.Background(), s, Message{Topic: "m", QoS: 1})
		rcExpectPublish(t, p, "m")
		go rcDrain(p) // takes the DISCONNECT
		rcClose(t, s)
		if err := rcResult(t, "m", m); !errors.Is(err, ErrPending) || errors.Is(err, ErrDropped) {
			t.Errorf("Publish(m) after Close = %v, want ErrPending, not dropped", err)
		}
		synctest.Wait()
		drops.none(t)
		if out := rcLoad(t, st); len(out) != 1 || out[0].Topic != "m" || out[0].Attempts != 0 {
			t.Errorf("store holds %+v after Close, want m with Attempts 0", out)
		}
		b = newPipeBroker(t)
		s = rcSession(t, b, SessionOptions{Options: o})
		p, _ = rcAccept(t, b, true)
		// m goes out again first, then n.
		n := rcPublish(context.Background(), s, Message{Topic: "n", QoS: 1})
		pub := rcExpectPublish(t, p, "m")
		p.send(&packet.Puback{PacketID: pub.PacketID})
		pub = rcExpectPublish(t, p, "n")
		p.send(&packet.Puback{PacketID: pub.PacketID})
		if err := rcResult(t, "n", n); err != nil {
			t.Errorf("Publish(n) = %v", err)
		}
		rcClose(t, s)
	})
}

// TestRecoveryAttemptsSurviveRestart: the attempts of a poison message are
// kept in a FileStore: a first Session sees 2 connections end on it and is
// closed; the store holds Attempts 2; a second Session on the reopened
// store with MaxAttempts 3 drops it after one more.
func TestRecoveryAttemptsSurviveRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "session.log")
		fs := rcOpenStore(t, path)
		b := newPipeBroker(t)
		o := Options{ClientID: "restart", PersistentSession: true, MaxAttempts: 3, Store: fs}
		s := rcSession(t, b, SessionOptions{Options: o})
		poison := rcPublish(context.Background(), s, Message{Topic: "poison", Payload: []byte("bad"), QoS: 1})
		for range 2 {
			p, _ := rcAccept(t, b, true)
			rcExpectPublish(t, p, "poison")
			p.conn.Close()
		}
		synctest.Wait() // the Session waits to reconnect
		if out := rcLoad(t, fs); len(out) != 1 || out[0].Topic != "poison" || out[0].Attempts != 2 {
			t.Fatalf("store holds %+v, want poison with Attempts 2", out)
		}
		rcClose(t, s)
		if err := rcResult(t, "poison", poison); !errors.Is(err, ErrPending) {
			t.Errorf("Publish(poison) after Close = %v, want ErrPending (the store keeps it)", err)
		}
		if err := fs.Close(); err != nil {
			t.Fatal(err)
		}

		// Restart.
		fs = rcOpenStore(t, path)
		out := rcLoad(t, fs)
		if len(out) != 1 || out[0].Attempts != 2 {
			t.Fatalf("reopened store holds %+v, want poison with Attempts 2", out)
		}
		drops := newRCDrops()
		o.Store, o.OnDrop = fs, drops.onDrop
		b = newPipeBroker(t)
		s = rcSession(t, b, SessionOptions{Options: o})
		p, _ := rcAccept(t, b, true)
		rcExpectPublish(t, p, "poison")
		p.conn.Close()
		d := drops.next(t)
		if d.m.Topic != "poison" || string(d.m.Payload) != "bad" || !errors.Is(d.err, ErrTooManyAttempts) {
			t.Errorf("OnDrop(%q, %q, %v), want poison, bad, ErrTooManyAttempts", d.m.Topic, d.m.Payload, d.err)
		}
		synctest.Wait()
		if out := rcLoad(t, fs); len(out) != 0 {
			t.Errorf("store holds %v after the drop, want nothing", rcTopics(out))
		}
		if st := s.Stats(); st.Dropped != 1 || st.Pending != 0 {
			t.Errorf("Stats.Dropped = %d, Pending = %d; want 1 and 0", st.Dropped, st.Pending)
		}
		// The next connection sends nothing of it.
		p, _ = rcAccept(t, b, true)
		ok := rcPublish(context.Background(), s, Message{Topic: "ok", QoS: 1})
		pub := rcExpectPublish(t, p, "ok")
		p.send(&packet.Puback{PacketID: pub.PacketID})
		if err := rcResult(t, "ok", ok); err != nil {
			t.Errorf("Publish(ok) = %v", err)
		}
		rcClose(t, s)
	})
}

// TestRecoveryDiscard: Discard drops queued messages (their Publish returns
// ErrDiscarded, OnDrop is told) and the window goes on with the others; a
// message discarded on the wire keeps its packet identifier until its
// acknowledgement, so that the late PUBACK completes nothing else; a
// released QoS 2 message is not offered to match; a message discarded on
// the wire is not sent again after a reconnect.
func TestRecoveryDiscard(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			drops := newRCDrops()
			c, p, _ := dialPipe(t, &Options{ClientID: "discard", KeepAlive: -1, MaxInflight: 1, OnDrop: drops.onDrop}, nil)
			ctx := context.Background()
			a := rcPublish(ctx, c, Message{Topic: "A", QoS: 1})
			pubA := rcExpectPublish(t, p, "A")
			bErr := rcPublish(ctx, c, Message{Topic: "B", Payload: []byte("b"), QoS: 1})
			cErr := rcPublish(ctx, c, Message{Topic: "C", QoS: 1})
			if n := c.Stats().Pending; n != 3 {
				t.Fatalf("Stats.Pending = %d, want 3", n)
			}
			if n := c.Discard(func(m Message) bool { return m.Topic == "B" }); n != 1 {
				t.Errorf("Discard(B) = %d, want 1", n)
			}
			if err := rcResult(t, "B", bErr); !errors.Is(err, ErrDiscarded) || !errors.Is(err, ErrDropped) {
				t.Errorf("Publish(B) = %v, want ErrDiscarded", err)
			}
			if d := drops.next(t); d.m.Topic != "B" || string(d.m.Payload) != "b" || !errors.Is(d.err, ErrDiscarded) {
				t.Errorf("OnDrop(%q, %q, %v), want B, b, ErrDiscarded", d.m.Topic, d.m.Payload, d.err)
			}
			if st := c.Stats(); st.Dropped != 1 || st.Pending != 2 {
				t.Errorf("Stats.Dropped = %d, Pending = %d; want 1 and 2", st.Dropped, st.Pending)
			}
			p.send(&packet.Puback{PacketID: pubA.PacketID})
			if err := rcResult(t, "A", a); err != nil {
				t.Errorf("Publish(A) = %v", err)
			}
			pubC := rcExpectPublish(t, p, "C") // B is never sent
			if pubC.PacketID == pubA.PacketID {
				t.Errorf("C has A's identifier %d", pubA.PacketID)
			}
			// Now C is on the wire: it can be discarded too.
			if n := c.Discard(func(m Message) bool { return m.Topic == "C" }); n != 1 {
				t.Errorf("Discard(C) on the wire = %d, want 1", n)
			}
			if err := rcResult(t, "C", cErr); !errors.Is(err, ErrDiscarded) {
				t.Errorf("Publish(C) = %v, want ErrDiscarded", err)
			}
			if d := drops.next(t); d.m.Topic != "C" || !errors.Is(d.err, ErrDiscarded) {
				t.Errorf("OnDrop(%q, %v), want C, ErrDiscarded", d.m.Topic, d.err)
			}
			if n := c.Discard(func(Message) bool { return true }); n != 0 {
				t.Errorf("Discard(all) with nothing pending = %d, want 0", n)
			}
			// Its late PUBACK is expected: not counted as unexpected.
			p.send(&packet.Puback{PacketID: pubC.PacketID})
			d := rcPublish(ctx, c, Message{Topic: "D", QoS: 1})
			pubD := rcExpectPublish(t, p, "D")
			p.send(&packet.Puback{PacketID: pubD.PacketID})
			if err := rcResult(t, "D", d); err != nil {
				t.Errorf("Publish(D) = %v", err)
			}
			if st := c.Stats(); st.UnexpectedAcks != 0 || st.Dropped != 2 || st.Pending != 0 {
				t.Errorf("Stats.UnexpectedAcks = %d, Dropped = %d, Pending = %d; want 0, 2, 0", st.UnexpectedAcks, st.Dropped, st.Pending)
			}
		})
	})

	// A message discarded on the wire keeps its identifier: the next one
	// given must not be it. Identifiers are given in increasing order, so
	// the store starts the client just below the wrap: Z holds 1 and W
	// 65535, the last given; the next identifier would be 1 again were Z's
	// freed by Discard, and Z's late PUBACK would complete the new message.
	t.Run("identifier held", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			st := NewMemoryStore()
			st.PutOutbound(StoredMessage{Seq: 1, PacketID: 1, Topic: "Z", QoS: 1})
			st.PutOutbound(StoredMessage{Seq: 2, PacketID: 65535, Topic: "W", QoS: 1})
			drops := newRCDrops()
			// Dial writes Z before it returns: answer the CONNECT and read
			// Z meanwhile.
			b := newPipeBroker(t)
			dialed := make(chan *Client, 1)
			go func() {
				c, err := Dial(context.Background(), b, &Options{ClientID: "held", KeepAlive: -1, MaxInflight: 1, Store: st, OnDrop: drops.onDrop})
				if err != nil {
					t.Error(err)
				}
				dialed <- c
			}()
			p := acceptConnect(t, b, &packet.Connack{})
			pubZ := rcExpectPublish(t, p, "Z")
			if pubZ.PacketID != 1 {
				t.Fatalf("Z sent with identifier %d, want its stored 1", pubZ.PacketID)
			}
			c := <-dialed
			if c == nil {
				t.FailNow()
			}
			t.Cleanup(func() { c.Close(); <-c.Done() })
			if n := c.Discard(func(m Message) bool { return m.Topic == "Z" }); n != 1 {
				t.Fatalf("Discard(Z) = %d, want 1", n)
			}
			if d := drops.next(t); d.m.Topic != "Z" || !errors.Is(d.err, ErrDiscarded) {
				t.Errorf("OnDrop(%q, %v), want Z, ErrDiscarded", d.m.Topic, d.err)
			}
			synctest.Wait()
			if out := rcLoad(t, st); len(out) != 1 || out[0].Topic != "W" {
				t.Errorf("store holds %v after Discard(Z), want [W]", rcTopics(out))
			}
			d := rcPublish(context.Background(), c, Message{Topic: "D", QoS: 1})
			// Z's late PUBACK: it must complete Z, not D.
			p.send(&packet.Puback{PacketID: 1})
			synctest.Wait()
			select {
			case err := <-d:
				t.Fatalf("Publish(D) returned %v on Z's late PUBACK, before D was sent", err)
			default:
			}
			pubW := rcExpectPublish(t, p, "W")
			p.send(&packet.Puback{PacketID: pubW.PacketID})
			pubD := rcExpectPublish(t, p, "D")
			if pubD.PacketID == 1 {
				t.Errorf("D sent with identifier 1, held by the discarded Z until its PUBACK")
			}
			p.send(&packet.Puback{PacketID: pubD.PacketID})
			if err := rcResult(t, "D", d); err != nil {
				t.Errorf("Publish(D) = %v", err)
			}
			if s := c.Stats(); s.UnexpectedAcks != 0 || s.Pending != 0 {
				t.Errorf("Stats.UnexpectedAcks = %d, Pending = %d; want 0 and 0", s.UnexpectedAcks, s.Pending)
			}
		})
	})

	t.Run("released QoS 2", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, p, _ := dialPipe(t, &Options{ClientID: "rel", KeepAlive: -1}, nil)
			q := rcPublish(context.Background(), c, Message{Topic: "Q", QoS: 2})
			pub := rcExpectPublish(t, p, "Q")
			p.send(&packet.Pubrec{PacketID: pub.PacketID})
			p.expect(packet.PUBREL)
			synctest.Wait()
			var offered []string
			n := c.Discard(func(m Message) bool { offered = append(offered, m.Topic); return true })
			if n != 0 || len(offered) != 0 {
				t.Errorf("Discard = %d, offered %q; want 0, none (the PUBREC came: the server has it)", n, offered)
			}
			p.send(&packet.Pubcomp{PacketID: pub.PacketID})
			if err := rcResult(t, "Q", q); err != nil {
				t.Errorf("Publish(Q) = %v", err)
			}
		})
	})

	t.Run("on the wire, then reconnect", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newPipeBroker(t)
			s := rcSession(t, b, SessionOptions{Options: Options{ClientID: "wire", PersistentSession: true}})
			p, _ := rcAccept(t, b, false)
			if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
				t.Fatal(err)
			}
			x := rcPublish(context.Background(), s, Message{Topic: "X", QoS: 1})
			rcExpectPublish(t, p, "X")
			if n := s.Discard(func(m Message) bool { return m.Topic == "X" }); n != 1 {
				t.Fatalf("Discard(X) = %d, want 1", n)
			}
			if err := rcResult(t, "X", x); !errors.Is(err, ErrDiscarded) {
				t.Errorf("Publish(X) = %v, want ErrDiscarded", err)
			}
			p.conn.Close()
			p, _ = rcAccept(t, b, true)
			y := rcPublish(context.Background(), s, Message{Topic: "Y", QoS: 1})
			pub := rcExpectPublish(t, p, "Y") // not X again
			p.send(&packet.Puback{PacketID: pub.PacketID})
			if err := rcResult(t, "Y", y); err != nil {
				t.Errorf("Publish(Y) = %v", err)
			}
			rcClose(t, s)
		})
	})
}

// TestRecoveryDiscardCount: Discard returns the number of messages match
// selected. A message match refused, which the window then drops because
// it expired, is reported to OnDrop with ErrExpired but is not one that
// Discard dropped. The write buffer (WriteBufferSize 1) stops the window
// with room left in it, so that x waits unsent at its head.
func TestRecoveryDiscardCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drops := newRCDrops()
		c, p, _ := dialPipe(t, &Options{ClientID: "count", KeepAlive: -1, WriteBufferSize: 1, OnDrop: drops.onDrop}, nil)
		big := make([]byte, 4000)
		ctx := context.Background()
		b1 := rcPublish(ctx, c, Message{Topic: "big1", Payload: big, QoS: 1})
		b2 := rcPublish(ctx, c, Message{Topic: "big2", Payload: big, QoS: 1})
		x := rcPublish(ctx, c, Message{Topic: "x", QoS: 1, Expires: time.Now().Add(time.Minute)})
		if st := c.Stats(); st.InFlight != 2 || st.Pending != 3 {
			t.Fatalf("Stats.InFlight = %d, Pending = %d; want 2 written and x waiting for the write buffer", st.InFlight, st.Pending)
		}
		time.Sleep(2 * time.Minute)
		var offered []string
		n := c.Discard(func(m Message) bool { offered = append(offered, m.Topic); return false })
		if n != 0 {
			t.Errorf("Discard with a match that selects nothing (offered %q) = %d, want 0", offered, n)
		}
		if err := rcResult(t, "x", x); !errors.Is(err, ErrExpired) {
			t.Errorf("Publish(x) = %v, want ErrExpired", err)
		}
		if d := drops.next(t); d.m.Topic != "x" || !errors.Is(d.err, ErrExpired) {
			t.Errorf("OnDrop(%q, %v), want x, ErrExpired", d.m.Topic, d.err)
		}
		pub := rcExpectPublish(t, p, "big1")
		p.send(&packet.Puback{PacketID: pub.PacketID})
		pub = rcExpectPublish(t, p, "big2")
		p.send(&packet.Puback{PacketID: pub.PacketID})
		for _, ch := range []<-chan error{b1, b2} {
			if err := rcResult(t, "big", ch); err != nil {
				t.Errorf("Publish(big) = %v", err)
			}
		}
	})
}

// TestRecoveryDiscardedQoS2Released: a QoS 2 message discarded on the wire
// whose PUBREC then comes is the server's (the client sends its PUBREL).
// When the connection ends before the PUBCOMP, the PUBREL is
// unacknowledged, and a client resuming the session must send it again
// with its packet identifier [MQTT-4.4.0-1]; its identifier must stay
// taken until then, for the server treats a new QoS 2 PUBLISH under an
// identifier it awaits a PUBREL for as a duplicate and does not deliver it
// [MQTT-4.3.3-2].
func TestRecoveryDiscardedQoS2Released(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeBroker(t)
		s := rcSession(t, b, SessionOptions{Options: Options{ClientID: "q2", PersistentSession: true}})
		p, _ := rcAccept(t, b, true)
		if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
		q := rcPublish(context.Background(), s, Message{Topic: "q", QoS: 2})
		pub := rcExpectPublish(t, p, "q")
		if n := s.Discard(func(m Message) bool { return m.Topic == "q" }); n != 1 {
			t.Fatalf("Discard(q) before its PUBREC = %d, want 1", n)
		}
		if err := rcResult(t, "q", q); !errors.Is(err, ErrDiscarded) {
			t.Errorf("Publish(q) = %v, want ErrDiscarded", err)
		}
		p.send(&packet.Pubrec{PacketID: pub.PacketID})
		if rel := p.expect(packet.PUBREL).(*packet.Pubrel); rel.PacketID != pub.PacketID {
			t.Fatalf("PUBREL %d, want %d", rel.PacketID, pub.PacketID)
		}
		p.conn.Close() // before the PUBCOMP

		p, _ = rcAccept(t, b, true)
		// The PUBREL, if re-sent, comes first (the Session writes it
		// before it is connected), then n.
		n := rcPublish(context.Background(), s, Message{Topic: "n", QoS: 1})
		switch pk := p.next().(type) {
		case *packet.Pubrel:
			if pk.PacketID != pub.PacketID {
				t.Errorf("PUBREL %d after the reconnect, want %d", pk.PacketID, pub.PacketID)
			}
			p.send(&packet.Pubcomp{PacketID: pub.PacketID})
			pub := rcExpectPublish(t, p, "n")
			p.send(&packet.Puback{PacketID: pub.PacketID})
		case *packet.Publish:
			t.Errorf("after the reconnect the client sent PUBLISH %q (id %d) and no PUBREL %d: the released message's PUBREL is never sent again, and its identifier is free for a new message, which the server would take for a duplicate", pk.Topic, pk.PacketID, pub.PacketID)
			p.send(&packet.Puback{PacketID: pk.PacketID})
		default:
			t.Errorf("after the reconnect: %v, want PUBREL %d", pk.Type(), pub.PacketID)
		}
		if err := rcResult(t, "n", n); err != nil {
			t.Errorf("Publish(n) = %v", err)
		}
		rcClose(t, s)
	})
}

// TestRecoveryExpires: a message already past its expiry is refused at
// once; one that expires while the Session is offline, or after it was
// written and before it must go out again, is dropped with ErrExpired
// when the connection comes, not sent; one without expiry is sent. The
// expiry is kept by a FileStore across a restart.
func TestRecoveryExpires(t *testing.T) {
	t.Run("past", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, p, _ := dialPipe(t, &Options{ClientID: "past", KeepAlive: -1}, nil)
			err := c.Publish(context.Background(), Message{Topic: "old", QoS: 1, Expires: time.Now().Add(-time.Second)})
			if !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrExpired) {
				t.Errorf("Publish of an expired message = %v, want ErrNotSent and ErrExpired", err)
			}
			if s := c.Stats(); s.Pending != 0 {
				t.Errorf("Stats.Pending = %d, want 0", s.Pending)
			}
			// Nothing of it was written: the next PUBLISH is the next message.
			ok := rcPublish(context.Background(), c, Message{Topic: "new", QoS: 1, Expires: time.Now().Add(time.Minute)})
			pub := rcExpectPublish(t, p, "new")
			p.send(&packet.Puback{PacketID: pub.PacketID})
			if err := rcResult(t, "new", ok); err != nil {
				t.Errorf("Publish(new) = %v", err)
			}
		})
	})

	t.Run("offline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			drops := newRCDrops()
			b := newPipeBroker(t)
			d := &rcDialer{d: b}
			d.fail.Store(true)
			s := rcSession(t, d, SessionOptions{
				Options:    Options{ClientID: "offline", OnDrop: drops.onDrop},
				MinBackoff: time.Second, MaxBackoff: 5 * time.Second,
			})
			ctx := ctxT(t, time.Second)
			if err := s.Enqueue(ctx, Message{Topic: "stale", Payload: []byte("s"), QoS: 1, Expires: time.Now().Add(time.Minute)}); err != nil {
				t.Fatalf("Enqueue(stale) = %v", err)
			}
			if err := s.Enqueue(ctx, Message{Topic: "keep", QoS: 1}); err != nil {
				t.Fatalf("Enqueue(keep) = %v", err)
			}
			time.Sleep(2 * time.Minute)
			if s.State() == StateConnected || d.dials.Load() < 2 {
				t.Fatalf("state %v after %d dials, want offline", s.State(), d.dials.Load())
			}
			d.fail.Store(false)
			p, _ := rcAccept(t, b, false)
			pub := rcExpectPublish(t, p, "keep")
			p.send(&packet.Puback{PacketID: pub.PacketID})
			dr := drops.next(t)
			if dr.m.Topic != "stale" || string(dr.m.Payload) != "s" || !errors.Is(dr.err, ErrExpired) || !errors.Is(dr.err, ErrDropped) {
				t.Errorf("OnDrop(%q, %q, %v), want stale, s, ErrExpired", dr.m.Topic, dr.m.Payload, dr.err)
			}
			synctest.Wait()
			if st := s.Stats(); st.Dropped != 1 || st.Pending != 0 {
				t.Errorf("Stats.Dropped = %d, Pending = %d; want 1 and 0", st.Dropped, st.Pending)
			}
			rcClose(t, s)
		})
	})

	t.Run("queued behind a full window", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			drops := newRCDrops()
			c, p, _ := dialPipe(t, &Options{ClientID: "window", KeepAlive: -1, MaxInflight: 1, OnDrop: drops.onDrop}, nil)
			ctx := context.Background()
			a := rcPublish(ctx, c, Message{Topic: "A", QoS: 1})
			pubA := rcExpectPublish(t, p, "A")
			late := rcPublish(ctx, c, Message{Topic: "late", QoS: 1, Expires: time.Now().Add(time.Minute)})
			next := rcPublish(ctx, c, Message{Topic: "next", QoS: 1})
			time.Sleep(2 * time.Minute)
			p.send(&packet.Puback{PacketID: pubA.PacketID})
			pub := rcExpectPublish(t, p, "next") // late is not sent
			p.send(&packet.Puback{PacketID: pub.PacketID})
			for _, r := range []struct {
				what string
				ch   <-chan error
				want error
			}{{"A", a, nil}, {"late", late, ErrExpired}, {"next", next, nil}} {
				if err := rcResult(t, r.what, r.ch); !errors.Is(err, r.want) || (r.want == nil) != (err == nil) {
					t.Errorf("Publish(%s) = %v, want %v", r.what, err, r.want)
				}
			}
			if dr := drops.next(t); dr.m.Topic != "late" || !errors.Is(dr.err, ErrExpired) {
				t.Errorf("OnDrop(%q, %v), want late, ErrExpired", dr.m.Topic, dr.err)
			}
		})
	})

	t.Run("written, then expired before the re-send", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			drops := newRCDrops()
			b := newPipeBroker(t)
			s := rcSession(t, b, SessionOptions{Options: Options{ClientID: "resend", PersistentSession: true, OnDrop: drops.onDrop}})
			p, _ := rcAccept(t, b, false)
			if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
				t.Fatal(err)
			}
			m := rcPublish(context.Background(), s, Message{Topic: "m", QoS: 1, Expires: time.Now().Add(time.Minute)})
			rcExpectPublish(t, p, "m")
			time.Sleep(2 * time.Minute) // no PUBACK
			p.conn.Close()
			p, _ = rcAccept(t, b, true)
			if err := rcResult(t, "m", m); !errors.Is(err, ErrExpired) {
				t.Errorf("Publish(m) = %v, want ErrExpired", err)
			}
			if dr := drops.next(t); dr.m.Topic != "m" || !errors.Is(dr.err, ErrExpired) {
				t.Errorf("OnDrop(%q, %v), want m, ErrExpired", dr.m.Topic, dr.err)
			}
			n := rcPublish(context.Background(), s, Message{Topic: "n", QoS: 1})
			pub := rcExpectPublish(t, p, "n") // not m again
			p.send(&packet.Puback{PacketID: pub.PacketID})
			if err := rcResult(t, "n", n); err != nil {
				t.Errorf("Publish(n) = %v", err)
			}
			rcClose(t, s)
		})
	})

	t.Run("FileStore", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "session.log")
			fs := rcOpenStore(t, path)
			d := &rcDialer{d: newPipeBroker(t)}
			d.fail.Store(true)
			o := Options{ClientID: "exp", PersistentSession: true, Store: fs}
			s := rcSession(t, d, SessionOptions{Options: o})
			expires := time.Now().Add(time.Hour)
			ctx := ctxT(t, time.Second)
			if err := s.Enqueue(ctx, Message{Topic: "e", QoS: 2, Expires: expires}); err != nil {
				t.Fatal(err)
			}
			if err := s.Enqueue(ctx, Message{Topic: "f", QoS: 1}); err != nil {
				t.Fatal(err)
			}
			rcClose(t, s)
			fs.Close()

			fs = rcOpenStore(t, path)
			out := rcLoad(t, fs)
			if len(out) != 2 || out[0].Topic != "e" || !out[0].Expires.Equal(expires) || out[1].Topic != "f" || !out[1].Expires.IsZero() {
				t.Fatalf("reopened store holds %+v; want e expiring at %v, then f without expiry", out, expires)
			}
			time.Sleep(2 * time.Hour)
			drops := newRCDrops()
			o.Store, o.OnDrop = fs, drops.onDrop
			b := newPipeBroker(t)
			s = rcSession(t, b, SessionOptions{Options: o})
			p, _ := rcAccept(t, b, true)
			// e, QoS 2 and loaded from the store, may have been written
			// before the restart (the client cannot tell): a PUBREL for
			// its identifier, so that the server frees it, is allowed;
			// its PUBLISH is not.
			for done := false; !done; {
				switch pk := p.next().(type) {
				case *packet.Publish:
					if string(pk.Topic) != "f" {
						t.Fatalf("PUBLISH of %q, want f (e expired)", pk.Topic)
					}
					p.send(&packet.Puback{PacketID: pk.PacketID})
					done = true
				case *packet.Pubrel:
					if pk.PacketID != out[0].PacketID {
						t.Fatalf("PUBREL %d, want none or e's %d", pk.PacketID, out[0].PacketID)
					}
					p.send(&packet.Pubcomp{PacketID: pk.PacketID})
				default:
					t.Fatalf("got %v, want PUBLISH f", pk.Type())
				}
			}
			if dr := drops.next(t); dr.m.Topic != "e" || dr.m.QoS != 2 || !errors.Is(dr.err, ErrExpired) || !dr.m.Expires.Equal(expires) {
				t.Errorf("OnDrop(%q, QoS %d, expires %v, %v), want e, 2, %v, ErrExpired", dr.m.Topic, dr.m.QoS, dr.m.Expires, dr.err, expires)
			}
			synctest.Wait()
			if out := rcLoad(t, fs); len(out) != 0 {
				t.Errorf("store holds %v, want nothing", rcTopics(out))
			}
			rcClose(t, s)
		})
	})
}

// TestRecoveryPublishContext: with the window full, a Publish whose
// context ends while its message waits is withdrawn (ErrNotSent, and its
// record leaves the store); one whose message was written returns
// ErrPending, and the message is still delivered.
func TestRecoveryPublishContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		c, p, _ := dialPipe(t, &Options{ClientID: "ctx", KeepAlive: -1, MaxInflight: 1, Store: st}, nil)
		ctxA, cancelA := context.WithCancel(context.Background())
		defer cancelA()
		ctxB, cancelB := context.WithCancel(context.Background())
		defer cancelB()
		a := rcPublish(ctxA, c, Message{Topic: "A", QoS: 1})
		pubA := rcExpectPublish(t, p, "A")
		bErr := rcPublish(ctxB, c, Message{Topic: "B", QoS: 1})
		if n := len(rcLoad(t, st)); n != 2 {
			t.Fatalf("store holds %d messages, want 2", n)
		}
		cancelB()
		err := rcResult(t, "B", bErr)
		if !errors.Is(err, ErrNotSent) || errors.Is(err, ErrPending) || !errors.Is(err, context.Canceled) {
			t.Errorf("Publish(B) waiting for the window, its context cancelled = %v; want ErrNotSent and context.Canceled, not ErrPending", err)
		}
		synctest.Wait()
		if out := rcLoad(t, st); len(out) != 1 || out[0].Topic != "A" {
			t.Errorf("store holds %v after B was withdrawn, want [A]", rcTopics(out))
		}
		if n := c.Stats().Pending; n != 1 {
			t.Errorf("Stats.Pending = %d, want 1", n)
		}
		cancelA()
		err = rcResult(t, "A", a)
		if !errors.Is(err, ErrPending) || errors.Is(err, ErrNotSent) || !errors.Is(err, context.Canceled) {
			t.Errorf("Publish(A) written, its context cancelled = %v; want ErrPending and context.Canceled, not ErrNotSent", err)
		}
		cErr := rcPublish(context.Background(), c, Message{Topic: "C", QoS: 1})
		p.send(&packet.Puback{PacketID: pubA.PacketID})
		pubC := rcExpectPublish(t, p, "C") // B is never sent
		p.send(&packet.Puback{PacketID: pubC.PacketID})
		if err := rcResult(t, "C", cErr); err != nil {
			t.Errorf("Publish(C) = %v", err)
		}
		synctest.Wait()
		if s := c.Stats(); s.Pending != 0 || s.InFlight != 0 {
			t.Errorf("Stats.Pending = %d, InFlight = %d; want 0 and 0", s.Pending, s.InFlight)
		}
		if out := rcLoad(t, st); len(out) != 0 {
			t.Errorf("store holds %v, want nothing", rcTopics(out))
		}
	})
}

// TestRecoveryEnqueue: Enqueue returns once a message is accepted, with no
// connection yet, and the Session sends it when one comes; with a
// FileStore, a message enqueued before Close is sent by the next Session
// on the same store.
func TestRecoveryEnqueue(t *testing.T) {
	t.Run("before the connection", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newPipeBroker(t)
			s := rcSession(t, b, SessionOptions{Options: Options{ClientID: "enq"}})
			synctest.Wait() // the Session waits for the server's end of its first connection
			if err := s.Enqueue(ctxT(t, time.Second), Message{Topic: "e", Payload: []byte("1"), QoS: 1}); err != nil {
				t.Fatalf("Enqueue = %v", err)
			}
			if st := s.Stats(); st.Pending != 1 || st.Connections != 0 {
				t.Errorf("Stats.Pending = %d, Connections = %d; want 1 and 0", st.Pending, st.Connections)
			}
			if err := s.Enqueue(ctxT(t, time.Second), Message{Topic: "zero"}); !errors.Is(err, ErrNotConnected) || !errors.Is(err, ErrNotSent) {
				t.Errorf("Enqueue at QoS 0 without a connection = %v, want ErrNotConnected", err)
			}
			p, _ := rcAccept(t, b, false)
			pub := rcExpectPublish(t, p, "e")
			if string(pub.Payload) != "1" || pub.QoS != 1 {
				t.Errorf("PUBLISH %q QoS %d, want 1 QoS 1", pub.Payload, pub.QoS)
			}
			p.send(&packet.Puback{PacketID: pub.PacketID})
			synctest.Wait()
			if n := s.Stats().Pending; n != 0 {
				t.Errorf("Stats.Pending = %d after the PUBACK, want 0", n)
			}
			rcClose(t, s)
		})
	})

	t.Run("restart", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "session.log")
			fs := rcOpenStore(t, path)
			d := &rcDialer{d: newPipeBroker(t)}
			d.fail.Store(true)
			o := Options{ClientID: "enq-restart", PersistentSession: true, Store: fs}
			s := rcSession(t, d, SessionOptions{Options: o})
			if err := s.Enqueue(ctxT(t, time.Second), Message{Topic: "later", Payload: []byte("x"), QoS: 1}); err != nil {
				t.Fatalf("Enqueue = %v", err)
			}
			if n := s.Stats().Pending; n != 1 {
				t.Errorf("Stats.Pending = %d, want 1", n)
			}
			rcClose(t, s)
			fs.Close()

			fs = rcOpenStore(t, path)
			o.Store = fs
			b := newPipeBroker(t)
			s = rcSession(t, b, SessionOptions{Options: o})
			p, c := rcAccept(t, b, false)
			if c.CleanSession {
				t.Error("CONNECT with clean session 1 from a PersistentSession")
			}
			pub := rcExpectPublish(t, p, "later")
			if string(pub.Payload) != "x" {
				t.Errorf("payload %q, want x", pub.Payload)
			}
			p.send(&packet.Puback{PacketID: pub.PacketID})
			synctest.Wait()
			if out := rcLoad(t, fs); len(out) != 0 {
				t.Errorf("store holds %v after the PUBACK, want nothing", rcTopics(out))
			}
			if n := s.Stats().Pending; n != 0 {
				t.Errorf("Stats.Pending = %d, want 0", n)
			}
			rcClose(t, s)
		})
	})
}

// TestRecoveryRefused: by default a permanent refusal stops the Session:
// Err and LastError are the refusal, State is StateClosed, Done closes,
// WaitConnected fails with it, a pending Publish ends, and no second
// CONNECT is made. CONNACK 3 is retried. RetryRefused retries after the
// duration it returns, counting the refusals in a row from 1 again after a
// successful connection.
func TestRecoveryRefused(t *testing.T) {
	for _, code := range []packet.ConnackCode{packet.UnacceptableProtocolVersion, packet.IdentifierRejected, packet.BadUsernameOrPassword, packet.NotAuthorized} {
		for _, withStore := range []bool{false, true} {
			name := code.String()
			if withStore {
				name += "/store"
			}
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					want := &ConnackError{Code: code}
					d := &rcDialer{d: newPipeBroker(t)}
					o := Options{ClientID: "refused"}
					var st *MemoryStore
					if withStore {
						st = NewMemoryStore()
						o.Store = st
					}
					s := rcSession(t, d, SessionOptions{Options: o})
					waitErr := make(chan error, 1)
					go func() { waitErr <- s.WaitConnected(context.Background()) }()
					pending := rcPublish(context.Background(), s, Message{Topic: "p", QoS: 1})
					p := d.d.(*pipeBroker).accept()
					p.expect(packet.CONNECT)
					p.send(&packet.Connack{ReturnCode: code})
					select {
					case <-s.Done():
					case <-time.After(time.Minute):
						t.Fatalf("the Session did not stop on CONNACK %d; %d dials", code, d.dials.Load())
					}
					err := s.Err()
					var ce *ConnackError
					if !errors.Is(err, want) || !errors.As(err, &ce) || ce.Code != code || !ce.Permanent() {
						t.Errorf("Err() = %v, want the refusal %v", err, want)
					}
					if s.State() != StateClosed {
						t.Errorf("State() = %v, want closed", s.State())
					}
					if err := s.LastError(); !errors.Is(err, want) {
						t.Errorf("LastError() = %v, want the refusal", err)
					}
					for i, err := range []error{rcResult(t, "WaitConnected", waitErr), s.WaitConnected(context.Background())} {
						if !errors.Is(err, want) {
							t.Errorf("WaitConnected (%d) = %v, want an error wrapping the refusal", i, err)
						}
					}
					err = rcResult(t, "pending", pending)
					if withStore {
						if !errors.Is(err, ErrPending) || errors.Is(err, ErrNotSent) {
							t.Errorf("pending Publish with a Store = %v, want ErrPending", err)
						}
						if out := rcLoad(t, st); len(out) != 1 {
							t.Errorf("store holds %v, want the pending message", rcTopics(out))
						}
					} else if !errors.Is(err, ErrNotSent) {
						t.Errorf("pending Publish = %v, want ErrNotSent", err)
					}
					if err := s.Publish(context.Background(), Message{Topic: "after", QoS: 1}); !errors.Is(err, ErrNotSent) {
						t.Errorf("Publish after the stop = %v, want ErrNotSent", err)
					}
					time.Sleep(time.Hour)
					if n := d.dials.Load(); n != 1 {
						t.Errorf("%d dials, want 1", n)
					}
				})
			})
		}
	}

	t.Run("ServerUnavailable", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newPipeBroker(t)
			var errs []error
			var mu sync.Mutex
			s := rcSession(t, b, SessionOptions{
				Options:        Options{ClientID: "unavailable"},
				OnConnectError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
			})
			acceptConnect(t, b, &packet.Connack{ReturnCode: packet.ServerUnavailable})
			rcAccept(t, b, false) // a second CONNECT
			if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
				t.Fatalf("WaitConnected = %v", err)
			}
			if err := s.LastError(); !errors.Is(err, ErrServerUnavailable) {
				t.Errorf("LastError() = %v, want ErrServerUnavailable", err)
			}
			if s.Err() != nil || s.State() != StateConnected {
				t.Errorf("Err() = %v, State() = %v; want nil, connected", s.Err(), s.State())
			}
			mu.Lock()
			if len(errs) != 1 || !errors.Is(errs[0], ErrServerUnavailable) {
				t.Errorf("OnConnectError got %v, want the refusal once", errs)
			}
			mu.Unlock()
			rcClose(t, s)
		})
	})

	t.Run("RetryRefused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newPipeBroker(t)
			type call struct {
				code     packet.ConnackCode
				refusals int
			}
			calls := make(chan call, 16)
			const retry = 7 * time.Second
			s := rcSession(t, b, SessionOptions{
				Options: Options{ClientID: "retry"},
				RetryRefused: func(err *ConnackError, refusals int) time.Duration {
					calls <- call{err.Code, refusals}
					return retry
				},
			})
			refuse := func(code packet.ConnackCode, wantRefusals int) {
				t.Helper()
				p := acceptConnect(t, b, &packet.Connack{ReturnCode: code})
				refused := time.Now()
				select {
				case c := <-calls:
					if c.code != code || c.refusals != wantRefusals {
						t.Errorf("RetryRefused(%d, %d), want (%d, %d)", c.code, c.refusals, code, wantRefusals)
					}
				case <-time.After(time.Minute):
					t.Fatal("RetryRefused not called")
				}
				synctest.Wait()
				if st := s.State(); st != StateWaiting {
					t.Errorf("State() = %v after a refusal to retry, want waiting", st)
				}
				p = b.accept()
				if d := time.Since(refused); d != retry {
					t.Errorf("next attempt %v after the refusal, want %v", d, retry)
				}
				// Hand the connection back: answer its CONNECT next.
				b.conns <- p.conn
			}
			refuse(packet.BadUsernameOrPassword, 1)
			refuse(packet.NotAuthorized, 2)
			p, _ := rcAccept(t, b, false)
			if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
				t.Fatal(err)
			}
			p.conn.Close()
			refuse(packet.BadUsernameOrPassword, 1) // counted from 1 again
			rcAccept(t, b, false)
			if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
				t.Fatal(err)
			}
			if s.Err() != nil {
				t.Errorf("Err() = %v, want nil", s.Err())
			}
			rcClose(t, s)
		})
	})

	t.Run("RetryRefused negative", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			d := &rcDialer{d: newPipeBroker(t)}
			s := rcSession(t, d, SessionOptions{
				Options:      Options{ClientID: "retry-stop"},
				RetryRefused: func(*ConnackError, int) time.Duration { return -1 },
			})
			p := d.d.(*pipeBroker).accept()
			p.expect(packet.CONNECT)
			p.send(&packet.Connack{ReturnCode: packet.NotAuthorized})
			select {
			case <-s.Done():
			case <-time.After(time.Minute):
				t.Fatal("the Session did not stop")
			}
			if !errors.Is(s.Err(), ErrNotAuthorized) || d.dials.Load() != 1 {
				t.Errorf("Err() = %v after %d dials, want ErrNotAuthorized after 1", s.Err(), d.dials.Load())
			}
		})
	})
}

// TestRecoveryStateAcrossLoss: a Session connects (StateConnecting, then
// StateConnected); when the server closes the connection, LastError is the
// loss, the Session waits (StateWaiting), connects again (StateConnecting)
// and is connected (StateConnected), LastError staying the loss.
func TestRecoveryStateAcrossLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeBroker(t)
		lost := make(chan error, 4)
		s := rcSession(t, b, SessionOptions{
			Options:          Options{ClientID: "state"},
			MinBackoff:       time.Second,
			MaxBackoff:       time.Second,
			OnConnectionLost: func(err error) { lost <- err },
		})
		synctest.Wait()
		if st := s.State(); st != StateConnecting {
			t.Errorf("State() before the first CONNACK = %v, want connecting", st)
		}
		p, _ := rcAccept(t, b, false)
		if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
		if st, err := s.State(), s.LastError(); st != StateConnected || err != nil {
			t.Errorf("State() = %v, LastError() = %v; want connected, nil", st, err)
		}
		p.conn.Close()
		var lossErr error
		select {
		case lossErr = <-lost:
		case <-time.After(time.Minute):
			t.Fatal("OnConnectionLost not called")
		}
		synctest.Wait()
		if st := s.State(); st != StateWaiting {
			t.Errorf("State() after the loss = %v, want waiting", st)
		}
		err := s.LastError()
		if err == nil || err != lossErr || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)) || errors.Is(err, ErrClosed) {
			t.Errorf("LastError() = %v, want the loss %v", err, lossErr)
		}
		time.Sleep(2 * time.Second) // past the backoff: the Session dials and waits for CONNACK
		if st := s.State(); st != StateConnecting {
			t.Errorf("State() while reconnecting = %v, want connecting", st)
		}
		rcAccept(t, b, false)
		if err := s.WaitConnected(ctxT(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
		if st := s.State(); st != StateConnected {
			t.Errorf("State() after reconnecting = %v, want connected", st)
		}
		if err := s.LastError(); err != lossErr {
			t.Errorf("LastError() after reconnecting = %v, want it kept: %v", err, lossErr)
		}
		if n := s.Stats().Reconnects; n != 1 {
			t.Errorf("Stats.Reconnects = %d, want 1", n)
		}
		rcClose(t, s)
		if st, err := s.State(), s.Err(); st != StateClosed || !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: State() = %v, Err() = %v; want closed, ErrClosed", st, err)
		}
	})
}

// TestRecoveryCleanSessionDefault: zero Options connect with clean session
// 1; PersistentSession sends clean session 0 and needs a ClientID.
func TestRecoveryCleanSessionDefault(t *testing.T) {
	connectOf := func(t *testing.T, o *Options) *packet.Connect {
		t.Helper()
		var c *packet.Connect
		synctest.Test(t, func(t *testing.T) {
			b := newPipeBroker(t)
			done := make(chan error, 1)
			go func() {
				cl, err := Dial(context.Background(), b, o)
				if err == nil {
					cl.Close()
					<-cl.Done()
				}
				done <- err
			}()
			p := b.accept()
			c = p.expect(packet.CONNECT).(*packet.Connect)
			p.send(&packet.Connack{})
			if err := <-done; err != nil {
				t.Fatalf("Dial: %v", err)
			}
		})
		return c
	}
	t.Run("nil", func(t *testing.T) {
		if c := connectOf(t, nil); !c.CleanSession || len(c.ClientID) != 20 {
			t.Errorf("nil Options: CONNECT clean session %v, client identifier %q; want 1 and a generated one", c.CleanSession, c.ClientID)
		}
	})
	t.Run("zero", func(t *testing.T) {
		if c := connectOf(t, &Options{}); !c.CleanSession {
			t.Error("zero Options: CONNECT with clean session 0, want 1")
		}
		if c := connectOf(t, &Options{ClientID: "named"}); !c.CleanSession {
			t.Error("Options with only a ClientID: CONNECT with clean session 0, want 1")
		}
	})
	t.Run("persistent", func(t *testing.T) {
		if c := connectOf(t, &Options{ClientID: "keep", PersistentSession: true}); c.CleanSession || string(c.ClientID) != "keep" {
			t.Errorf("PersistentSession: CONNECT clean session %v, client identifier %q; want 0, keep", c.CleanSession, c.ClientID)
		}
	})
	t.Run("session", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newPipeBroker(t)
			rcSession(t, b, SessionOptions{})
			if _, c := rcAccept(t, b, false); !c.CleanSession {
				t.Error("zero SessionOptions: CONNECT with clean session 0, want 1")
			}
			b2 := newPipeBroker(t)
			rcSession(t, b2, SessionOptions{Options: Options{ClientID: "s", PersistentSession: true}})
			if _, c := rcAccept(t, b2, true); c.CleanSession {
				t.Error("PersistentSession: CONNECT with clean session 1, want 0")
			}
		})
	})
	t.Run("persistent without ClientID", func(t *testing.T) {
		d := &rcDialer{d: newPipeBroker(t)}
		if _, err := Dial(ctxT(t, time.Second), d, &Options{PersistentSession: true}); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Dial = %v, want ErrInvalidOptions", err)
		}
		if _, err := NewSession(d, &SessionOptions{Options: Options{PersistentSession: true}}); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("NewSession = %v, want ErrInvalidOptions", err)
		}
		if n := d.dials.Load(); n != 0 {
			t.Errorf("%d dials, want none", n)
		}
	})
}
