package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Hostile tests of Session (scripted peers and misuse).

// b2accept answers the next CONNECT on b with ack.
// TestHostileCallbackMergeReorders: while OnConnect runs (slowly), the
// connection drops, an attempt fails, the Session connects again and the
// connection drops again. The waiting calls merge by kind, each in the
// place of its latest call, so the last callback the application sees
// tells the latest state (not connected). Before, a merged call kept
// the place of its first call, and the last callback said "connected"
// while the Session was not.
//
// Promised: the callbacks "run one at a time, in order ... When they fall
// behind, the calls of one callback still waiting merge into one, with the
// latest argument" (SessionOptions.OnConnect).
func TestHostileCallbackMergeReorders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeBroker(t)
		var mu sync.Mutex
		var events []string
		add := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
		block := make(chan struct{})
		var first atomic.Bool
		first.Store(true)
		s, err := NewSession(b, &SessionOptions{
			Options:    Options{ClientID: "merge", KeepAlive: -1},
			MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
			OnConnect: func(bool) {
				add("connect")
				if first.Swap(false) {
					<-block
				}
			},
			OnConnectionLost: func(err error) { add("lost") },
			OnConnectError:   func(err error) { add("connect error") },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close(); <-s.Done() }()
		p := acceptConnect(t, b, &packet.Connack{})
		synctest.Wait() // OnConnect runs, and blocks
		p.conn.Close()  // lost #1
		p = b.accept()
		p.expect(packet.CONNECT)
		p.conn.Close()                             // connect error #1
		p = acceptConnect(t, b, &packet.Connack{}) // connected #2
		synctest.Wait()
		p.conn.Close() // lost #2
		// From now on every attempt is refused by closing.
		stopRefusing := make(chan struct{})
		refusing := make(chan struct{})
		go func() {
			defer close(refusing)
			for {
				select {
				case c := <-b.conns:
					c.Close()
				case <-stopRefusing:
					return
				}
			}
		}()
		time.Sleep(10 * time.Millisecond)
		close(block)
		synctest.Wait()
		mu.Lock()
		last := events[len(events)-1]
		got := fmt.Sprint(events)
		mu.Unlock()
		st := s.State()
		close(stopRefusing)
		<-refusing
		if last == "connect" && st != StateConnected {
			t.Errorf("callbacks ran %s; the last says connected, the Session is %v", got, st)
		}
	})
}

// TestHostileCallbacksCallSession: each callback calls the Session (State,
// Subscribe, Publish at QoS 1) and the last one calls Disconnect; the
// Session must end, Done must close, and nothing may hang. (Control.)
func TestHostileCallbacksCallSession(t *testing.T) {
	for _, where := range []string{"OnConnect", "OnConnectionLost", "OnConnectError", "RetryRefused", "handler"} {
		t.Run(where, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newPipeBroker(t)
				var s *Session
				disc := make(chan error, 1)
				discOnce := sync.Once{}
				disconnect := func() {
					discOnce.Do(func() { disc <- s.Disconnect(context.Background()) })
				}
				so := &SessionOptions{
					Options:    Options{ClientID: "cb", KeepAlive: -1},
					MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
				}
				switch where {
				case "OnConnect":
					so.OnConnect = func(bool) {
						_ = s.State()
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						defer cancel()
						s.Subscribe(ctx, Subscription{Filter: "x"})
						disconnect()
					}
				case "OnConnectionLost":
					so.OnConnectionLost = func(error) {
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						defer cancel()
						s.Publish(ctx, Message{Topic: "x", QoS: 1})
						disconnect()
					}
				case "OnConnectError":
					so.OnConnectError = func(error) { _ = s.LastError(); disconnect() }
				case "RetryRefused":
					so.RetryRefused = func(*ConnackError, int) time.Duration {
						disconnect()
						return time.Second
					}
				case "handler":
					so.DefaultHandler = func(Message) {
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						defer cancel()
						s.Publish(ctx, Message{Topic: "y", QoS: 1})
						disconnect()
					}
				}
				var err error
				s, err = NewSession(b, so)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { s.Close(); <-s.Done() }()
				switch where {
				case "OnConnect":
					p := acceptConnect(t, b, &packet.Connack{})
					sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
					p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
					go drain(p)
				case "OnConnectionLost":
					p := acceptConnect(t, b, &packet.Connack{})
					synctest.Wait()
					p.conn.Close()
					p = acceptConnect(t, b, &packet.Connack{})
					go drain(p) // never acknowledges: the Publish times out
				case "OnConnectError":
					p := b.accept()
					p.expect(packet.CONNECT)
					p.conn.Close()
				case "RetryRefused":
					acceptConnect(t, b, &packet.Connack{ReturnCode: packet.NotAuthorized})
				case "handler":
					p := acceptConnect(t, b, &packet.Connack{})
					go drain(p)
					p.send(&packet.Publish{Topic: []byte("in"), QoS: 1, PacketID: 1})
				}
				select {
				case err := <-disc:
					if err != nil {
						t.Errorf("Disconnect = %v", err)
					}
				case <-time.After(time.Minute):
					t.Fatal("Disconnect was never called")
				}
				select {
				case <-s.Done():
				case <-time.After(time.Minute):
					t.Fatal("Done not closed after Disconnect from " + where)
				}
				if !errors.Is(s.Err(), ErrClosed) || s.State() != StateClosed {
					t.Errorf("after Disconnect from %s: Err %v, State %v", where, s.Err(), s.State())
				}
			})
		})
	}
}

// TestHostileCallsAcrossLoss: Publish (QoS 1), Subscribe and Unsubscribe
// started while the connection is down, or as it drops, complete on the
// next connection; none fails with ErrClosed. (Control.)
func TestHostileCallsAcrossLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeBroker(t)
		s, err := NewSession(b, &SessionOptions{
			Options:    Options{ClientID: "across", KeepAlive: -1},
			MinBackoff: time.Second, MaxBackoff: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close(); <-s.Done() }()
		p := acceptConnect(t, b, &packet.Connack{})
		if err := s.WaitConnected(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
		p.conn.Close()
		synctest.Wait() // waiting to reconnect
		if st := s.State(); st != StateWaiting {
			t.Fatalf("State = %v, want waiting", st)
		}
		pubErr, subErr, unsubErr := make(chan error, 1), make(chan error, 1), make(chan error, 1)
		go func() { pubErr <- s.Publish(ctxT(t, time.Minute), Message{Topic: "p", QoS: 1}) }()
		go func() {
			_, err := s.Subscribe(ctxT(t, time.Minute), Subscription{Filter: "s"})
			subErr <- err
		}()
		go func() { unsubErr <- s.Unsubscribe(ctxT(t, time.Minute), "u") }()
		if err := s.Publish(ctxT(t, time.Second), Message{Topic: "q0"}); !errors.Is(err, ErrNotConnected) {
			t.Errorf("QoS 0 Publish offline = %v, want ErrNotConnected", err)
		}
		p = acceptConnect(t, b, &packet.Connack{})
		for range 3 {
			switch pk := p.next().(type) {
			case *packet.Publish:
				p.send(&packet.Puback{PacketID: pk.PacketID})
			case *packet.Subscribe:
				p.send(&packet.Suback{PacketID: pk.PacketID, ReturnCodes: []packet.SubackCode{0}})
			case *packet.Unsubscribe:
				p.send(&packet.Unsuback{PacketID: pk.PacketID})
			default:
				t.Fatalf("got %v", pk.Type())
			}
		}
		for name, ch := range map[string]chan error{"Publish": pubErr, "Subscribe": subErr, "Unsubscribe": unsubErr} {
			if err := <-ch; err != nil {
				t.Errorf("%s across the loss = %v", name, err)
			}
		}
		go drain(p)
	})
}
