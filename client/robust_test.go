package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// TestHandlerPublishesWithFullInbox: a handler that publishes at QoS 1 and
// waits for the PUBACK while the inbox is full must not deadlock: the
// reader reads on while a request awaits its acknowledgement.
func TestHandlerPublishesWithFullInbox(t *testing.T) {
	var c *Client
	var forwarded atomic.Int32
	handlerErr := make(chan error, 1)
	c, p := dialFake(t, &Options{ClientID: "fwd", InboxSize: 2, DefaultHandler: func(m Message) {
		if err := c.Publish(context.Background(), Message{Topic: "out", Payload: m.Payload, QoS: 1}); err != nil {
			select {
			case handlerErr <- err:
			default:
			}
			return
		}
		forwarded.Add(1)
	}})
	const n = 20
	for i := range n {
		p.send(&packet.Publish{Topic: []byte("in"), Payload: []byte{byte(i)}})
	}
	for i := range n {
		pub := p.expect(packet.PUBLISH).(*packet.Publish)
		if pub.Payload[0] != byte(i) {
			t.Fatalf("forwarded %d as message %d", pub.Payload[0], i)
		}
		p.send(&packet.Puback{PacketID: pub.PacketID})
	}
	deadline := time.Now().Add(5 * time.Second)
	for forwarded.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-handlerErr:
		t.Fatal(err)
	default:
	}
	if got := forwarded.Load(); got != n {
		t.Fatalf("%d of %d forwarded", got, n)
	}
}

// TestDisconnectFromHandler: a handler may call Disconnect (and Close); it
// returns, and Done is closed once the handler has returned.
func TestDisconnectFromHandler(t *testing.T) {
	for _, name := range []string{"Disconnect", "Close"} {
		t.Run(name, func(t *testing.T) {
			returned := make(chan error, 1)
			var c *Client
			c, p := dialFake(t, &Options{ClientID: "hd", DefaultHandler: func(Message) {
				if name == "Close" {
					returned <- c.Close()
				} else {
					returned <- c.Disconnect(context.Background())
				}
			}})
			p.send(&packet.Publish{Topic: []byte("x")})
			select {
			case err := <-returned:
				if err != nil {
					t.Fatalf("%s from a handler = %v", name, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s from a handler did not return", name)
			}
			p.expect(packet.DISCONNECT)
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed")
			}
		})
	}
}

// TestNoHandlerAfterDisconnect: messages still queued when Disconnect is
// called are not handled after it returns.
func TestNoHandlerAfterDisconnect(t *testing.T) {
	release := make(chan struct{})
	var handled atomic.Int32
	c, p := dialFake(t, &Options{ClientID: "nh", DefaultHandler: func(Message) {
		handled.Add(1)
		<-release
	}})
	for range 5 {
		p.send(&packet.Publish{Topic: []byte("x"), QoS: 1, PacketID: 1})
	}
	for handled.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the reader queue the rest
	if err := c.Disconnect(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-c.Done()
	if n := handled.Load(); n != 1 {
		t.Errorf("%d handlers ran, want only the one running at Disconnect", n)
	}
}

// TestBlockedWriteDetected: a peer that stops reading, so that writes block,
// is noticed within keep alive plus PingTimeout, like a silent peer, and
// Publish, finding the write buffer full, fails within its context instead
// of blocking for ever.
func TestBlockedWriteDetected(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const ka, pt = time.Second, 500 * time.Millisecond
		c, _, _ := dialPipe(t, &Options{ClientID: "bw", KeepAlive: ka, PingTimeout: pt}, nil)
		start := time.Now()
		big := make([]byte, 32<<10)
		var err error
		for n := 0; err == nil; n++ {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			err = c.Publish(ctx, Message{Topic: "big", Payload: big})
			cancel()
			if n > 10 {
				t.Fatalf("%d messages of 32 KiB accepted by a client whose peer reads nothing, with a write buffer of 64 KiB", n)
			}
		}
		if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish: %v, want ErrNotSent and context.DeadlineExceeded", err)
		}
		select {
		case <-c.Done():
		case <-time.After(time.Hour):
			t.Fatal("a peer that reads nothing was not noticed")
		}
		// Which of the two bounds fires first depends on how the write
		// deadline is rounded to whole seconds (TestWriteDeadlineWhileHeldBack
		// checks the write deadline alone).
		if d := time.Since(start); d > ka+pt+time.Second {
			t.Errorf("noticed after %v, want within %v", d, ka+pt+time.Second)
		}
		if err := c.Err(); err == nil || !strings.Contains(err.Error(), "write") && !errors.Is(err, ErrPingTimeout) {
			t.Errorf("Err = %v, want a write failure or ErrPingTimeout", err)
		}
	})
}

// TestCloseErrors: a request cut short by Close reports ErrConnectionLost,
// not ErrClosed (which would say a retry is safe); calls after Close report
// ErrClosed and ErrNotSent.
func TestCloseErrors(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "ce"})
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(context.Background(), Message{Topic: "a", QoS: 2}) }()
	p.expect(packet.PUBLISH)
	c.Close()
	err := <-errc
	if !errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrClosed) || errors.Is(err, ErrNotSent) {
		t.Errorf("in-flight Publish after Close = %v, want ErrConnectionLost only", err)
	}
	err = c.Publish(context.Background(), Message{Topic: "a", QoS: 1})
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
		t.Errorf("Publish after Close = %v, want ErrClosed and ErrNotSent", err)
	}
}

// TestCancelledContextSendsNothing: a context that is already done stops
// every call before anything is sent.
func TestCancelledContextSendsNothing(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "cc"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, qos := range []byte{0, 1, 2} {
		if err := c.Publish(ctx, Message{Topic: "a", QoS: qos}); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNotSent) {
			t.Errorf("Publish QoS %d = %v, want ErrNotSent and context.Canceled", qos, err)
		}
	}
	if _, err := c.Subscribe(ctx, Subscription{Filter: "a"}); !errors.Is(err, ErrNotSent) {
		t.Errorf("Subscribe = %v, want ErrNotSent", err)
	}
	if err := c.Unsubscribe(ctx, "a"); !errors.Is(err, ErrNotSent) {
		t.Errorf("Unsubscribe = %v, want ErrNotSent", err)
	}
	// The next packet the broker sees is this one.
	if err := c.Publish(context.Background(), Message{Topic: "marker"}); err != nil {
		t.Fatal(err)
	}
	if pub := p.expect(packet.PUBLISH).(*packet.Publish); string(pub.Topic) != "marker" {
		t.Errorf("sent %q before the marker", pub.Topic)
	}
}

// TestRouting: shared subscriptions route by their filter; the default
// handler runs once per message however many handler-less subscriptions
// match; each handler runs once.
func TestRouting(t *testing.T) {
	var mu sync.Mutex
	var got []string
	record := func(name string) Handler {
		return func(m Message) {
			mu.Lock()
			got = append(got, name+" "+m.Topic)
			mu.Unlock()
		}
	}
	c, p := dialFake(t, &Options{ClientID: "rt", DefaultHandler: record("default")})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(ctxT(t, 5*time.Second),
			Subscription{Filter: "$share/g/sh/+", Handler: record("shared")},
			Subscription{Filter: "a/#"}, Subscription{Filter: "a/+"}, Subscription{Filter: "+/b"},
			Subscription{Filter: "x/#", Handler: record("x")}, Subscription{Filter: "x/+", Handler: record("x+")})
		errc <- err
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0, 0, 0, 0, 0, 0}})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"sh/1", "a/b", "x/y", "none"} {
		p.send(&packet.Publish{Topic: []byte(topic)})
	}
	want := []string{"shared sh/1", "default a/b", "x x/y", "x+ x/y", "default none"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries %q, want %q", got, want)
	}
}

// TestErrorQuotesAreShort: an invalid 65,536-byte topic does not end up
// whole in the error message.
func TestErrorQuotesAreShort(t *testing.T) {
	c, _ := dialFake(t, &Options{ClientID: "eq"})
	err := c.Publish(context.Background(), Message{Topic: strings.Repeat("a", 65536)})
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error of %d bytes: %.200v", len(err.Error()), err)
	}
}

// TestNotMQTT: a server answering CONNECT with something that is not MQTT
// (here HTTP) gets an error saying so.
func TestNotMQTT(t *testing.T) {
	f := newFakeBroker(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Dial(ctxT(t, 5*time.Second), f.dialer(), nil)
		errc <- err
	}()
	p := f.accept()
	p.expect(packet.CONNECT)
	io.WriteString(p.conn, "HTTP/1.1 400 Bad Request\r\n\r\n")
	if err := <-errc; !errors.Is(err, packet.ErrMalformed) || !strings.Contains(err.Error(), "not MQTT") {
		t.Errorf("err = %v", err)
	}
}
