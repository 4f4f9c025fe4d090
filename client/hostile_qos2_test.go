package client

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Hostile tests of received QoS 2 messages (scripted peers and misuse).

func b2pub2(id uint16, payload string, dup bool) *packet.Publish {
	return &packet.Publish{QoS: 2, DUP: dup, PacketID: id, Topic: []byte("t"), Payload: []byte(payload)}
}

// b2got records payloads handled; the first handled message blocks until
// release is closed.
type b2got struct {
	mu      sync.Mutex
	got     []string
	release chan struct{}
}

func (g *b2got) handler(m Message) {
	g.mu.Lock()
	g.got = append(g.got, string(m.Payload))
	first := len(g.got) == 1
	g.mu.Unlock()
	if first {
		<-g.release
	}
}

func (g *b2got) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

// TestHostileQoS2HeldBackMessageLost: a Session's reader holds back a new
// QoS 2 message because the inbox is full, and the connection drops. The
// message never reached a handler, so its identifier is forgotten: when
// the server sends it again on the resumed session (DUP), it is delivered.
// Before, the identifier stayed in the Session's set, and the re-send was
// acknowledged as a duplicate but never delivered.
//
// Promised: "A received QoS 2 message is delivered once, also when re-sent
// across a reconnect" (README, Delivery guarantees).
func TestHostileQoS2HeldBackMessageLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &b2got{release: make(chan struct{})}
		store := NewMemoryStore()
		b := newPipeBroker(t)
		s, err := NewSession(b, &SessionOptions{
			// Keep alive on: a reader holding back notices the dead link by
			// its PINGREQ's failed write.
			Options:    Options{ClientID: "q2hold", PersistentSession: true, KeepAlive: 10 * time.Second, Store: store, InboxSize: 1, DefaultHandler: g.handler},
			MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close(); <-s.Done() }()
		p := acceptConnect(t, b, &packet.Connack{})
		if err := s.WaitConnected(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		p.send(b2pub2(1, "one", false))
		synctest.Wait() // "one" is being handled
		p.send(b2pub2(2, "two", false), b2pub2(3, "three", false))
		synctest.Wait() // "two" waits in the inbox, "three" is held back by the reader
		if st := s.Stats(); st.Inbox != 1 {
			t.Fatalf("inbox holds %d messages, want 1", st.Inbox)
		}
		p.conn.Close() // the link drops

		p = acceptConnect(t, b, &packet.Connack{SessionPresent: true})
		if err := s.WaitConnected(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		close(g.release) // "one" and "two" are handled; their PUBRECs went nowhere
		synctest.Wait()
		// The server got no PUBREC: it sends all three again.
		go func() {
			p.send(b2pub2(1, "one", true), b2pub2(2, "two", true), b2pub2(3, "three", true))
		}()
		var recs []uint16
		for len(recs) < 3 {
			switch pk := p.next().(type) {
			case *packet.Pubrec:
				recs = append(recs, pk.PacketID)
			case *packet.Pingreq:
				go p.send(&packet.Pingresp{})
			default:
				t.Fatalf("got %v, want PUBREC", pk.Type())
			}
		}
		synctest.Wait()
		if want := []string{"one", "two", "three"}; !slices.Equal(g.take(), want) {
			t.Errorf("handled %v, want %v (PUBRECs sent for %v): a message held back at the connection loss was acknowledged but never delivered", g.take(), want, recs)
		}
	})
}

// TestHostileQoS2StaleRecordAfterNewSession: a QoS 2 message of the old
// session is being handled when the connection drops; the server comes
// back without the session (session present 0), so the client forgets its
// received identifiers, in memory and in the Store. When the handler then
// returns, its identifier is not recorded, and after a restart on that
// Store a new QoS 2 message under the same identifier is delivered. Before,
// the record was written for a session that no longer existed, and the new
// message was taken for a duplicate.
func TestHostileQoS2StaleRecordAfterNewSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &b2got{release: make(chan struct{})}
		store := NewMemoryStore()
		b := newPipeBroker(t)
		so := &SessionOptions{
			Options:    Options{ClientID: "q2stale", PersistentSession: true, KeepAlive: -1, Store: store, DefaultHandler: g.handler},
			MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		}
		s, err := NewSession(b, so)
		if err != nil {
			t.Fatal(err)
		}
		p := acceptConnect(t, b, &packet.Connack{})
		if err := s.WaitConnected(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		p.send(b2pub2(7, "old", false))
		synctest.Wait() // being handled
		p.conn.Close()
		p = b.accept()
		p.expect(packet.CONNECT)
		p.send(&packet.Connack{SessionPresent: false}) // the server lost the session
		if err := s.WaitConnected(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		close(g.release)
		synctest.Wait()
		go drain(p)
		s.Close()
		<-s.Done()
		if _, in, _ := store.Load(); len(in) != 0 {
			t.Errorf("received identifiers in the Store after a new session: %v, want none (no PUBREL will ever release them)", in)
		}

		// Restart on the same Store; the server resumes the session of the
		// second connection, in which identifier 7 was never used.
		g2 := &b2got{release: make(chan struct{})}
		close(g2.release)
		so.DefaultHandler = g2.handler
		s2, err := NewSession(b, so)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s2.Close(); <-s2.Done() }()
		p = acceptConnect(t, b, &packet.Connack{SessionPresent: true})
		if err := s2.WaitConnected(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		p.send(b2pub2(7, "new", false))
		p.expect(packet.PUBREC)
		synctest.Wait()
		if got := g2.take(); !slices.Equal(got, []string{"new"}) {
			t.Errorf("after the restart, handled %v, want [new]: a new message was taken for a duplicate", got)
		}
	})
}

// TestHostileQoS2DisconnectQueuedRedelivered: Disconnect drops several QoS
// 2 messages queued behind a running handler; a new Client on the same
// Store must deliver each re-send exactly once, and the one handled only
// once. (Control: expected to pass.)
func TestHostileQoS2DisconnectQueuedRedelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore()
		g := &b2got{release: make(chan struct{})}
		o := &Options{ClientID: "q2dq", PersistentSession: true, KeepAlive: -1, Store: store, DefaultHandler: g.handler}
		c, p, b := dialPipe(t, o, nil)
		p.send(b2pub2(1, "a", false))
		synctest.Wait()
		p.send(b2pub2(2, "b", false), b2pub2(3, "c", false), b2pub2(2, "b", true)) // and a DUP of 2 at once
		synctest.Wait()
		go drain(p)
		done := make(chan error, 1)
		go func() { done <- c.Disconnect(context.Background()) }()
		synctest.Wait()
		close(g.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		<-c.Done()
		if _, in, _ := store.Load(); !slices.Equal(in, []uint16{1}) {
			t.Errorf("stored identifiers %v, want [1]", in)
		}
		_, p = redial(t, b, o, &packet.Connack{SessionPresent: true})
		p.send(b2pub2(1, "a", true), b2pub2(2, "b", true), b2pub2(3, "c", true), b2pub2(3, "c", true))
		for range 4 {
			p.expect(packet.PUBREC)
		}
		// PUBREL for an unknown identifier, and for 1: PUBCOMP each.
		p.send(&packet.Pubrel{PacketID: 999}, &packet.Pubrel{PacketID: 1})
		p.expect(packet.PUBCOMP)
		p.expect(packet.PUBCOMP)
		synctest.Wait()
		if got, want := g.take(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
			t.Errorf("handled %v, want %v", got, want)
		}
	})
}

// TestHostileQoS2SessionDisconnectRestart: a Session with a Store is
// disconnected while one QoS 2 message is handled, one waits in the inbox
// and one is held back by the reader; a new Session on the Store delivers
// the two unhandled ones when re-sent, and not the handled one. (Control.)
func TestHostileQoS2SessionDisconnectRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore()
		g := &b2got{release: make(chan struct{})}
		b := newPipeBroker(t)
		so := &SessionOptions{
			Options:    Options{ClientID: "q2sd", PersistentSession: true, KeepAlive: -1, Store: store, InboxSize: 1, DefaultHandler: g.handler},
			MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		}
		s, err := NewSession(b, so)
		if err != nil {
			t.Fatal(err)
		}
		p := acceptConnect(t, b, &packet.Connack{})
		p.send(b2pub2(1, "one", false))
		synctest.Wait()
		p.send(b2pub2(2, "two", false), b2pub2(3, "three", false))
		synctest.Wait()
		go drain(p)
		dc := make(chan error, 1)
		go func() { dc <- s.Disconnect(context.Background()) }()
		synctest.Wait()
		close(g.release)
		<-dc
		<-s.Done()
		g2 := &b2got{release: make(chan struct{})}
		close(g2.release)
		so.DefaultHandler = g2.handler
		s2, err := NewSession(b, so)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s2.Close(); <-s2.Done() }()
		p = acceptConnect(t, b, &packet.Connack{SessionPresent: true})
		go p.send(b2pub2(1, "one", true), b2pub2(2, "two", true), b2pub2(3, "three", true))
		for range 3 {
			p.expect(packet.PUBREC)
		}
		synctest.Wait()
		if got, want := g2.take(), []string{"two", "three"}; !slices.Equal(got, want) {
			t.Errorf("after the restart handled %v, want %v", got, want)
		}
		go drain(p)
	})
}
