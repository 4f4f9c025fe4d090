package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// recorder keeps what handlers got, as "handler topic".
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) handler(name string) Handler {
	return func(m Message) {
		r.mu.Lock()
		r.got = append(r.got, name+" "+m.Topic)
		r.mu.Unlock()
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestRoutedBeforeSuback: a PUBLISH the server sends between a SUBSCRIBE
// and its SUBACK (spec 3.8.4 allows it; brokers do it for retained
// messages) reaches the new subscription's handler, with and without a
// DefaultHandler; before, it went to the DefaultHandler, or was dropped
// though acknowledged.
func TestRoutedBeforeSuback(t *testing.T) {
	for _, withDefault := range []bool{false, true} {
		t.Run(fmt.Sprintf("default=%v", withDefault), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rec recorder
				o := &Options{ClientID: "early", KeepAlive: -1}
				if withDefault {
					o.DefaultHandler = rec.handler("default")
				}
				c, p, _ := dialPipe(t, o, nil)
				subErr := make(chan error, 1)
				go func() {
					_, err := c.Subscribe(context.Background(), Subscription{Filter: "a/#", QoS: 1, Handler: rec.handler("sub")})
					subErr <- err
				}()
				sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
				p.send(&packet.Publish{QoS: 1, PacketID: 7, Retain: true, Topic: []byte("a/retained")})
				p.expect(packet.PUBACK)
				p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{1}})
				if err := <-subErr; err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if got := rec.take(); len(got) != 1 || got[0] != "sub a/retained" {
					t.Errorf("handlers got %q, want [sub a/retained]", got)
				}
				if n := c.Stats().Unrouted; n != 0 {
					t.Errorf("Unrouted = %d", n)
				}
			})
		})
	}
}

// TestRefusedFilterLosesHandler: a filter the server refuses (0x80) loses
// its handler: later messages on it go to the DefaultHandler, and without
// one are counted as unrouted; nothing acknowledged is dropped silently.
func TestRefusedFilterLosesHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		c, p, _ := dialPipe(t, &Options{ClientID: "refused", KeepAlive: -1, DefaultHandler: rec.handler("default")}, nil)
		subErr := make(chan error, 1)
		go func() {
			_, err := c.Subscribe(context.Background(),
				Subscription{Filter: "ok/#", QoS: 1, Handler: rec.handler("ok")},
				Subscription{Filter: "no/#", QoS: 1, Handler: rec.handler("no")})
			subErr <- err
		}()
		sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{1, packet.SubackFailure}})
		if err := <-subErr; !errors.Is(err, ErrSubscriptionFailed) {
			t.Fatalf("Subscribe = %v, want ErrSubscriptionFailed", err)
		}
		p.send(&packet.Publish{Topic: []byte("ok/1")}, &packet.Publish{Topic: []byte("no/1")})
		synctest.Wait()
		got := rec.take()
		if len(got) != 2 || got[0] != "ok ok/1" || got[1] != "default no/1" {
			t.Errorf("handlers got %q, want [ok ok/1, default no/1]", got)
		}
	})
}

// TestUnsubscribeRemovesHandler: messages read before the UNSUBACK still
// reach the filter's handler [MQTT-3.10.4-3]; those read after go to the
// DefaultHandler, or are counted as unrouted.
func TestUnsubscribeRemovesHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		c, p, _ := dialPipe(t, &Options{ClientID: "unsub", KeepAlive: -1}, nil)
		go c.Subscribe(context.Background(), Subscription{Filter: "u/#", Handler: rec.handler("sub")})
		sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
		unsubErr := make(chan error, 1)
		synctest.Wait()
		go func() { unsubErr <- c.Unsubscribe(context.Background(), "u/#") }()
		unsub := p.expect(packet.UNSUBSCRIBE).(*packet.Unsubscribe)
		p.send(&packet.Publish{Topic: []byte("u/before")}, &packet.Unsuback{PacketID: unsub.PacketID}, &packet.Publish{Topic: []byte("u/after")})
		if err := <-unsubErr; err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := rec.take(); len(got) != 1 || got[0] != "sub u/before" {
			t.Errorf("handlers got %q, want [sub u/before]", got)
		}
		if n := c.Stats().Unrouted; n != 1 {
			t.Errorf("Unrouted = %d, want 1 (u/after, no DefaultHandler)", n)
		}
	})
}

// cutProxy forwards TCP connections to a broker and cuts them all on
// request.
type cutProxy struct {
	l     net.Listener
	mu    sync.Mutex
	links []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &cutProxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			cp.mu.Lock()
			cp.links = append(cp.links, c, b)
			cp.mu.Unlock()
			go copyClose(c, b)
			go copyClose(b, c)
		}
	}()
	t.Cleanup(func() { l.Close(); cp.cut() })
	return cp
}

func copyClose(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (cp *cutProxy) cut() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, c := range cp.links {
		c.Close()
	}
	cp.links = nil
}

// TestRestoredBeforeOnConnect, against mosquitto: on a clean session every
// connection is a new session, so the Session makes its subscriptions
// again; it does so before OnConnect, so an OnConnect that publishes a
// request and waits for the answer on a subscription gets it. Before, the
// subscriptions were made again only after OnConnect returned.
func TestRestoredBeforeOnConnect(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	cp := newCutProxy(t, b.TCPAddr)
	ctx := ctxT(t, 20*time.Second)
	answers := make(chan Message, 4)
	connects := make(chan error, 4)
	var armed atomic.Bool
	var s *Session
	s, err := NewSession(netx.TCP(cp.l.Addr().String()), &SessionOptions{
		Options:    Options{ClientID: "restore"},
		MinBackoff: 10 * time.Millisecond,
		OnConnect: func(sessionPresent bool) {
			if !armed.Load() {
				connects <- nil
				return
			}
			// Ask, and wait for the answer on the subscription.
			if err := s.Publish(ctx, Message{Topic: "echo/ask", Payload: []byte("ping"), QoS: 1}); err != nil {
				connects <- err
				return
			}
			select {
			case <-answers:
				connects <- nil
			case <-time.After(5 * time.Second):
				connects <- errors.New("no answer on the restored subscription within 5 s")
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := <-connects; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(ctx, Subscription{Filter: "echo/#", QoS: 1, Handler: func(m Message) { answers <- m }}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	cp.cut()
	if err := <-connects; err != nil {
		t.Fatalf("OnConnect after a reconnect: %v", err)
	}
}
