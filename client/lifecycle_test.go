package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Tests of what happens at the edges of a client's life and of a message's:
// Disconnect while messages wait for handlers, Discard and OnDrop, routes
// across SUBSCRIBE, UNSUBSCRIBE and failures, a Session's calls across a
// connection loss, and a Store written by another configuration.

// redial connects another Client to b with o, answering CONNECT with ack.
func redial(t *testing.T, b *pipeBroker, o *Options, ack *packet.Connack) (*Client, *peer) {
	t.Helper()
	wait := dialing(t, b, o)
	p := acceptConnect(t, b, ack)
	c := wait()
	t.Cleanup(func() { c.Close(); <-c.Done() })
	return c, p
}

// TestQoS2ExactlyOnceAcrossDisconnect: Disconnect drops received QoS 2
// messages still waiting for their handlers, and the server sends them
// again on the persistent session; they must then be delivered, and the
// one being handled at Disconnect must not be delivered twice. Before, the
// identifier was stored at receipt, so the re-sent message that never
// reached a handler was taken for a duplicate and lost.
func TestQoS2ExactlyOnceAcrossDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore()
		var mu sync.Mutex
		var got []string
		release := make(chan struct{})
		o := &Options{ClientID: "q2", PersistentSession: true, KeepAlive: -1, Store: store,
			DefaultHandler: func(m Message) {
				mu.Lock()
				got = append(got, string(m.Payload))
				mu.Unlock()
				<-release
			}}
		pub := func(id uint16, payload string, dup bool) *packet.Publish {
			return &packet.Publish{QoS: 2, DUP: dup, PacketID: id, Topic: []byte("t"), Payload: []byte(payload)}
		}
		c, p, b := dialPipe(t, o, nil)
		p.send(pub(1, "one", false), pub(2, "two", false))
		synctest.Wait() // "one" is being handled, "two" waits
		go drain(p)
		if err := c.Disconnect(context.Background()); err != nil {
			t.Fatal(err)
		}
		close(release)
		<-c.Done()
		if _, in, _ := store.Load(); !slices.Equal(in, []uint16{1}) {
			t.Errorf("stored received identifiers %v, want [1] (the message handled)", in)
		}

		// The server never got a PUBREC: it sends both again.
		_, p = redial(t, b, o, &packet.Connack{SessionPresent: true})
		p.send(pub(1, "one", true), pub(2, "two", true))
		var recs []uint16
		for range 2 {
			recs = append(recs, p.expect(packet.PUBREC).(*packet.Pubrec).PacketID)
		}
		slices.Sort(recs)
		if !slices.Equal(recs, []uint16{1, 2}) {
			t.Errorf("PUBRECs for %v, want 1 and 2", recs)
		}
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"one", "two"}; !slices.Equal(got, want) {
			t.Errorf("handled %v, want %v: each exactly once [MQTT-4.3.3-2]", got, want)
		}
	})
}

// TestDiscardMatchPanics: a match function that panics leaves every
// message as it was: none dropped half-way (its Publish never returning,
// Pending off by one). Before, the messages matched before the panic were
// unlinked without their waiters ever learning it.
func TestDiscardMatchPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, p, _ := dialPipe(t, &Options{ClientID: "dp", KeepAlive: -1}, nil)
		go drain(p) // never acknowledges
		errs := make(chan error, 2)
		for i := range 2 {
			go func() { errs <- c.Publish(context.Background(), Message{Topic: fmt.Sprint("m", i), QoS: 1}) }()
		}
		synctest.Wait()
		func() {
			defer func() {
				if recover() == nil {
					t.Error("match's panic was not passed on")
				}
			}()
			n := 0
			c.Discard(func(Message) bool {
				if n++; n == 2 {
					panic("boom")
				}
				return true
			})
		}()
		synctest.Wait()
		if n := c.Stats().Pending; n != 2 {
			t.Errorf("Pending = %d after the panic, want 2", n)
		}
		select {
		case err := <-errs:
			t.Fatalf("a Publish returned after the panic: %v", err)
		default:
		}
		if n := c.Discard(func(Message) bool { return true }); n != 2 {
			t.Errorf("Discard = %d, want 2", n)
		}
		for range 2 {
			if err := <-errs; !errors.Is(err, ErrDiscarded) {
				t.Errorf("Publish = %v, want ErrDiscarded", err)
			}
		}
	})
}

// TestOnDropMessageKept: the Message OnDrop gets is its own, which it may
// keep, even while the dispatcher is behind and later messages reuse the
// client's buffers. Before, small messages' pooled copies went back to the
// pool when they were dropped, before OnDrop ran, and later Publishes
// overwrote them.
func TestOnDropMessageKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var kept []Message
		block := make(chan struct{})
		o := &Options{ClientID: "ondrop", KeepAlive: -1, MaxInflight: 1, MaxPending: 1000,
			OnDrop: func(m Message, err error) {
				<-block // the dispatcher is behind
				mu.Lock()
				kept = append(kept, m)
				mu.Unlock()
			}}
		c, p, _ := dialPipe(t, o, nil)
		go drain(p) // never acknowledges
		go c.Publish(context.Background(), Message{Topic: "first", QoS: 1})
		synctest.Wait() // "first" takes the window
		const n = 50
		for i := range n {
			go c.Publish(context.Background(), Message{Topic: fmt.Sprintf("drop/%02d", i), Payload: fmt.Appendf(nil, "payload-%02d", i), QoS: 1})
			synctest.Wait() // accepted in this order
		}
		if got := c.Discard(func(m Message) bool { return m.Topic != "first" }); got != n {
			t.Fatalf("Discard = %d, want %d", got, n)
		}
		synctest.Wait()
		for i := range 2 * n {
			go c.Publish(context.Background(), Message{Topic: "XXXXXXX", Payload: fmt.Appendf(nil, "overwrite-%03d", i), QoS: 1})
		}
		synctest.Wait()
		close(block)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(kept) != n {
			t.Fatalf("OnDrop called %d times, want %d", len(kept), n)
		}
		for i, m := range kept {
			if want := fmt.Sprintf("drop/%02d", i); m.Topic != want || string(m.Payload) != fmt.Sprintf("payload-%02d", i) {
				t.Errorf("OnDrop call %d kept %q %q, want %q in acceptance order, unchanged", i, m.Topic, m.Payload, want)
			}
		}
	})
}

// TestOnDropHoldsRoom: while OnDrop calls wait for the dispatcher, the
// messages they carry still count against MaxPending, so dropping and
// accepting again cannot pile up callbacks without bound; once they have
// run, the room is free. Before, each drop freed its room at once.
func TestOnDropHoldsRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		var calls atomic.Int64
		o := &Options{ClientID: "room", MaxPending: 10,
			OnDrop: func(Message, error) { calls.Add(1); <-block }}
		s, err := NewSession(newPipeBroker(t), &SessionOptions{Options: *o}) // never answers CONNECT
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close(); <-s.Done() }()
		accepted := 0
		for range 5 {
			for range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := s.Enqueue(ctx, Message{Topic: "t", Payload: make([]byte, 100), QoS: 1})
				cancel()
				if err == nil {
					accepted++
				} else if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Enqueue = %v, want ErrNotSent and DeadlineExceeded", err)
				}
			}
			s.Discard(func(Message) bool { return true })
		}
		if accepted != 10 {
			t.Errorf("%d messages accepted while OnDrop was behind, want MaxPending (10)", accepted)
		}
		close(block)
		synctest.Wait()
		if calls.Load() != 10 {
			t.Errorf("OnDrop called %d times, want 10", calls.Load())
		}
		if err := s.Enqueue(ctxT(t, time.Second), Message{Topic: "t", QoS: 1}); err != nil {
			t.Errorf("Enqueue once OnDrop ran: %v", err)
		}
	})
}

// TestInboxSteadyFlow: handlers a little slower than the network keep the
// inbox from ever emptying; its queue must still not grow beyond its
// bound. Before, it was reset only when empty, and grew by one entry per
// message for as long as the flow lasted.
func TestInboxSteadyFlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var handled atomic.Int64
		o := &Options{ClientID: "steady", KeepAlive: -1, InboxSize: 16,
			DefaultHandler: func(Message) { handled.Add(1); time.Sleep(50 * time.Microsecond) }}
		c, p, _ := dialPipe(t, o, nil)
		var wrote atomic.Int64
		go flood(p, 20000, 0, &wrote)
		for handled.Load() < 19000 {
			time.Sleep(time.Millisecond)
		}
		c.c.in.mu.Lock()
		n := 0
		if q := c.c.in.q; q != nil {
			n = cap(q.items)
		}
		c.c.in.mu.Unlock()
		if n > 4*16+64 {
			t.Errorf("inbox queue capacity %d entries after %d messages, want about InboxSize (16)", n, handled.Load())
		}
		p.conn.Close()
	})
}

// TestUnsubackKeepsLaterSubscribe: an UNSUBACK removes the routes of the
// UNSUBSCRIBE it answers, not those of a Subscribe to the same filter made
// after it. Before, it removed every route of the filter, and a Subscribe
// that had succeeded lost its handler.
func TestUnsubackKeepsLaterSubscribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		c, p, _ := dialPipe(t, &Options{ClientID: "unsub", KeepAlive: -1, DefaultHandler: rec.handler("default")}, nil)
		go func() {
			if _, err := c.Subscribe(context.Background(), Subscription{Filter: "a", Handler: rec.handler("first")}); err != nil {
				t.Error(err)
			}
		}()
		sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
		synctest.Wait()

		unsubErr, subErr := make(chan error, 1), make(chan error, 1)
		go func() { unsubErr <- c.Unsubscribe(context.Background(), "a") }()
		unsub := p.expect(packet.UNSUBSCRIBE).(*packet.Unsubscribe)
		go func() {
			_, err := c.Subscribe(context.Background(), Subscription{Filter: "a", Handler: rec.handler("second")})
			subErr <- err
		}()
		sub = p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		// The server takes them in order: unsubscribed, subscribed again.
		p.send(&packet.Unsuback{PacketID: unsub.PacketID}, &packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
		if err := <-unsubErr; err != nil {
			t.Fatal(err)
		}
		if err := <-subErr; err != nil {
			t.Fatal(err)
		}
		p.send(&packet.Publish{Topic: []byte("a")})
		synctest.Wait()
		if got := rec.take(); !slices.Equal(got, []string{"second a"}) {
			t.Errorf("handled %v, want [second a]", got)
		}
	})
}

// TestUnsentSubscribeKeepsRoute: a Subscribe that fails before it was
// sent (ErrNotSent: the client keeps nothing) leaves the subscription in
// force, and its handler, as they were. Before, its route replaced the
// earlier one at once and stayed.
func TestUnsentSubscribeKeepsRoute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		c, p, _ := dialPipe(t, &Options{ClientID: "resub", KeepAlive: -1, WriteBufferSize: 256, DefaultHandler: rec.handler("default")}, nil)
		go func() {
			if _, err := c.Subscribe(context.Background(), Subscription{Filter: "a", Handler: rec.handler("first")}); err != nil {
				t.Error(err)
			}
		}()
		sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
		synctest.Wait()
		// The server stops reading: the write buffer fills.
		for range 3 {
			c.Publish(ctxT(t, 50*time.Millisecond), Message{Topic: "fill", Payload: make([]byte, 300)})
		}
		_, err := c.Subscribe(ctxT(t, 100*time.Millisecond), Subscription{Filter: "a", Handler: rec.handler("second")})
		if !errors.Is(err, ErrNotSent) {
			t.Fatalf("Subscribe = %v, want ErrNotSent", err)
		}
		go drain(p) // the server reads again
		p.send(&packet.Publish{Topic: []byte("a")})
		synctest.Wait()
		if got := rec.take(); !slices.Equal(got, []string{"first a"}) {
			t.Errorf("handled %v, want [first a]", got)
		}
	})
}

// TestOnConnectPublishAcrossLoss: a QoS 1 Publish made in OnConnect whose
// connection drops before the PUBACK completes on the next connection.
// Before, OnConnect ran on the supervisor, which could not reconnect while
// it waited: the Publish waited for ever.
func TestOnConnectPublishAcrossLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeBroker(t)
		var s *Session
		pubErr := make(chan error, 1)
		var first atomic.Bool
		first.Store(true)
		s, err := NewSession(b, &SessionOptions{Options: Options{ClientID: "oc", KeepAlive: -1},
			MinBackoff: time.Millisecond,
			OnConnect: func(bool) {
				if first.Swap(false) {
					pubErr <- s.Publish(context.Background(), Message{Topic: "hello", QoS: 1})
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close(); <-s.Done() }()
		p := acceptConnect(t, b, &packet.Connack{})
		p.expect(packet.PUBLISH)
		p.conn.Close() // the link drops before the PUBACK
		p = acceptConnect(t, b, &packet.Connack{})
		pub := p.expect(packet.PUBLISH).(*packet.Publish)
		p.send(&packet.Puback{PacketID: pub.PacketID})
		if err := <-pubErr; err != nil {
			t.Errorf("Publish in OnConnect = %v, want nil", err)
		}
	})
}

// TestSessionSubscribeAcrossLoss: a Session's Subscribe still waiting to
// be written when the connection drops goes out on the next connection;
// it must not fail with ErrClosed while the Session lives.
func TestSessionSubscribeAcrossLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeBroker(t)
		s, err := NewSession(b, &SessionOptions{Options: Options{ClientID: "sc", KeepAlive: -1, WriteBufferSize: 256}, MinBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close(); <-s.Done() }()
		p := acceptConnect(t, b, &packet.Connack{})
		if err := s.WaitConnected(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		for range 3 { // the server does not read: the write buffer fills
			s.Publish(ctxT(t, 50*time.Millisecond), Message{Topic: "fill", Payload: make([]byte, 300)})
		}
		errc := make(chan error, 1)
		go func() {
			_, err := s.Subscribe(ctxT(t, 5*time.Second), Subscription{Filter: "a", QoS: 1})
			errc <- err
		}()
		synctest.Wait()
		p.conn.Close() // the link drops
		p = acceptConnect(t, b, &packet.Connack{})
		sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{1}})
		if err := <-errc; err != nil {
			t.Errorf("Subscribe = %v, want nil", err)
		}
	})
}

// TestStoreBeyondMaxPending: a Store holding more messages than
// MaxPending (written with a larger one, or holding released QoS 2
// messages that no longer count) loads in full; Publish then waits for
// room. Before, the client refused to start on it.
func TestStoreBeyondMaxPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore()
		for i := range 5 {
			if err := store.PutOutbound(StoredMessage{Seq: uint64(i + 1), PacketID: uint16(i + 1), Topic: "t", Payload: []byte{byte(i)}, QoS: 1}); err != nil {
				t.Fatal(err)
			}
		}
		o := &Options{ClientID: "reload", PersistentSession: true, KeepAlive: -1, Store: store, MaxPending: 2}
		b := newPipeBroker(t)
		wait := dialing(t, b, o)
		p := acceptConnect(t, b, &packet.Connack{SessionPresent: true})
		for i := range 5 {
			pub := p.expect(packet.PUBLISH).(*packet.Publish)
			if pub.PacketID != uint16(i+1) || !pub.DUP {
				t.Errorf("re-sent PUBLISH %d with DUP %v, want %d with DUP", pub.PacketID, pub.DUP, i+1)
			}
		}
		c := wait()
		defer func() { c.Close(); <-c.Done() }()
		if err := c.Publish(ctxT(t, time.Second), Message{Topic: "t", QoS: 1}); !errors.Is(err, ErrNotSent) {
			t.Errorf("Publish beyond MaxPending = %v, want ErrNotSent (no room)", err)
		}
		for i := range 5 {
			p.send(&packet.Puback{PacketID: uint16(i + 1)})
		}
		errc := make(chan error, 1)
		go func() { errc <- c.Publish(context.Background(), Message{Topic: "t", QoS: 1}) }()
		pub := p.expect(packet.PUBLISH).(*packet.Publish)
		p.send(&packet.Puback{PacketID: pub.PacketID})
		if err := <-errc; err != nil {
			t.Errorf("Publish once acknowledged: %v", err)
		}
	})
}
