package client

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Hostile tests of routing (scripted peers and misuse).

// TestHostileUndoResurrectsUnsubscribed: Subscribe("a", H1) succeeds;
// Unsubscribe("a") is written; a second Subscribe("a", H2) waits for room
// in the write buffer; the UNSUBACK comes; the second Subscribe gives up
// unsent (ErrNotSent). Nothing routes "a" to H1 any more, and a Session
// does not subscribe to it again. Before, the second Subscribe installed
// its route while waiting, and its undo put H1's route back.
//
// Promised: handlers are removed "when the UNSUBACK arrives"
// (Client.Unsubscribe); ErrNotSent: "the client keeps nothing".
func TestHostileUndoResurrectsUnsubscribed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		b := newPipeBroker(t)
		s, err := NewSession(b, &SessionOptions{
			Options:    Options{ClientID: "undo", KeepAlive: -1, WriteBufferSize: 256, DefaultHandler: rec.handler("default")},
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
		go func() {
			if _, err := s.Subscribe(context.Background(), Subscription{Filter: "a", Handler: rec.handler("H1")}); err != nil {
				t.Error(err)
			}
		}()
		sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
		synctest.Wait()

		unsubErr := make(chan error, 1)
		go func() { unsubErr <- s.Unsubscribe(context.Background(), "a") }()
		unsub := p.expect(packet.UNSUBSCRIBE).(*packet.Unsubscribe)
		// The server stops reading for a while: the write buffer fills.
		for range 3 {
			s.Publish(ctxT(t, 50*time.Millisecond), Message{Topic: "fill", Payload: make([]byte, 300)})
		}
		subErr := make(chan error, 1)
		go func() {
			_, err := s.Subscribe(ctxT(t, time.Second), Subscription{Filter: "a", Handler: rec.handler("H2")})
			subErr <- err
		}()
		synctest.Wait() // the second Subscribe waits for room
		p.send(&packet.Unsuback{PacketID: unsub.PacketID})
		if err := <-unsubErr; err != nil {
			t.Fatalf("Unsubscribe = %v", err)
		}
		if err := <-subErr; !errors.Is(err, ErrNotSent) {
			t.Fatalf("second Subscribe = %v, want ErrNotSent", err)
		}
		subs, _ := s.c.rt.all()
		if len(subs) != 0 {
			t.Errorf("routes after Unsubscribe succeeded and Subscribe was not sent: %v, want none", subs)
		}
		go drain(p) // the server reads again (the fill messages)
		p.send(&packet.Publish{Topic: []byte("a")})
		synctest.Wait()
		if got := rec.take(); !slices.Equal(got, []string{"default a"}) {
			t.Errorf("a message on \"a\" after the UNSUBACK went to %v, want [default a]", got)
		}
		// A new connection without the session: what is subscribed again?
		p.conn.Close()
		p = acceptConnect(t, b, &packet.Connack{})
		connected := make(chan error, 1)
		go func() { connected <- s.WaitConnected(ctxT(t, time.Second)) }()
		synctest.Wait()
		select {
		case err := <-connected:
			if err != nil {
				t.Fatal(err)
			}
		default:
			pk := p.next()
			t.Errorf("on reconnect the Session sent %v for a filter that was unsubscribed", pk.Type())
			if sub, ok := pk.(*packet.Subscribe); ok {
				p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
			}
		}
		go drain(p)
	})
}

// TestHostileSubscribeQueuedBehindUnsubscribe: a Subscribe and an
// Unsubscribe of the same filter both wait for room in the write buffer.
// Whichever is written first, the routes agree with the server once both
// are answered: subscribed (route kept) when the SUBSCRIBE went last,
// unsubscribed (route gone) when the UNSUBSCRIBE did. Before, the
// Subscribe's route was installed before it waited, and an UNSUBACK
// written before it removed it while the server kept the subscription.
func TestHostileSubscribeQueuedBehindUnsubscribe(t *testing.T) {
	bad := 0
	for trial := range 40 {
		synctest.Test(t, func(t *testing.T) {
			c, p, _ := dialPipe(t, &Options{ClientID: "order", KeepAlive: -1, WriteBufferSize: 256}, nil)
			for range 3 {
				c.Publish(ctxT(t, 50*time.Millisecond), Message{Topic: "fill", Payload: make([]byte, 300)})
			}
			subErr, unsubErr := make(chan error, 1), make(chan error, 1)
			go func() {
				_, err := c.Subscribe(context.Background(), Subscription{Filter: "a", Handler: func(Message) {}})
				subErr <- err
			}()
			synctest.Wait()
			go func() { unsubErr <- c.Unsubscribe(context.Background(), "a") }()
			synctest.Wait()
			// The server reads again and answers in order.
			var last packet.Type
			for done := 0; done < 2; {
				switch pk := p.next().(type) {
				case *packet.Subscribe:
					last = packet.SUBSCRIBE
					p.send(&packet.Suback{PacketID: pk.PacketID, ReturnCodes: []packet.SubackCode{0}})
					done++
				case *packet.Unsubscribe:
					last = packet.UNSUBSCRIBE
					p.send(&packet.Unsuback{PacketID: pk.PacketID})
					done++
				}
			}
			if err := <-subErr; err != nil {
				t.Fatal(err)
			}
			if err := <-unsubErr; err != nil {
				t.Fatal(err)
			}
			subs, _ := c.c.rt.all()
			subscribed := last == packet.SUBSCRIBE
			if subscribed != (len(subs) == 1) {
				bad++
				t.Logf("trial %d: the server's last packet was %v, the client has routes %v", trial, last, subs)
			}
			go drain(p)
		})
	}
	if bad > 0 {
		t.Errorf("%d of 40 trials: the client's routes disagree with the server's subscriptions", bad)
	}
}

// TestHostileOverlappingFilters: with several matching subscriptions each
// handler runs once, a nil handler sends the message to DefaultHandler
// once, and a $share subscription matches its inner filter. (Control.)
func TestHostileOverlappingFilters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		c, p, _ := dialPipe(t, &Options{ClientID: "overlap", KeepAlive: -1, DefaultHandler: rec.handler("default")}, nil)
		go func() {
			_, err := c.Subscribe(context.Background(),
				Subscription{Filter: "a/+", Handler: rec.handler("plus")},
				Subscription{Filter: "a/#", Handler: rec.handler("hash")},
				Subscription{Filter: "#"},
				Subscription{Filter: "+/b"},
				Subscription{Filter: "$share/g/a/b", Handler: rec.handler("share")},
			)
			if err != nil {
				t.Error(err)
			}
		}()
		sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0, 0, 0, 0, 0}})
		synctest.Wait()
		p.send(&packet.Publish{Topic: []byte("a/b")})
		synctest.Wait()
		got := rec.take()
		slices.Sort(got)
		if want := []string{"default a/b", "hash a/b", "plus a/b", "share a/b"}; !slices.Equal(got, want) {
			t.Errorf("handled %v, want %v", got, want)
		}
	})
}
