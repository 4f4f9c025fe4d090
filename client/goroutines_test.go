package client

import (
	"runtime"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
)

// TestGoroutines: an idle Client runs one goroutine (its reader), an idle
// Session two (that and its supervisor), also after traffic, whose writer
// and dispatcher end with it; none are left after Close.
func TestGoroutines(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := ctxT(t, 20*time.Second)
	// settle waits for the number of goroutines to come down to want
	// more than before, and returns the last count seen.
	before := runtime.NumGoroutine()
	settle := func(want int) int {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine() - before
			if n <= want || time.Now().After(deadline) {
				return n
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	traffic := func(pub func(Message) error, sub func(Subscription) error) {
		t.Helper()
		got := make(chan Message, 1)
		if err := sub(Subscription{Filter: "g/#", QoS: 1, Handler: func(m Message) { got <- m }}); err != nil {
			t.Fatal(err)
		}
		if err := pub(Message{Topic: "g/1", QoS: 1, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatal("no message")
		}
	}

	c, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	if n := settle(1); n != 1 {
		t.Errorf("an idle Client runs %d goroutines, want 1", n)
	}
	traffic(func(m Message) error { return c.Publish(ctx, m) }, func(s Subscription) error { _, err := c.Subscribe(ctx, s); return err })
	if n := settle(1); n != 1 {
		t.Errorf("a Client idle again runs %d goroutines, want 1", n)
	}
	c.Close()
	<-c.Done()
	if n := settle(0); n != 0 {
		t.Errorf("%d goroutines left after Client.Close", n)
	}

	s, err := NewSession(netx.TCP(b.TCPAddr), &SessionOptions{Options: Options{ClientID: "g2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if n := settle(2); n != 2 {
		t.Errorf("an idle Session runs %d goroutines, want 2", n)
	}
	traffic(func(m Message) error { return s.Publish(ctx, m) }, func(sub Subscription) error { _, err := s.Subscribe(ctx, sub); return err })
	if n := settle(2); n != 2 {
		t.Errorf("a Session idle again runs %d goroutines, want 2", n)
	}
	s.Close()
	<-s.Done()
	if n := settle(0); n != 0 {
		t.Errorf("%d goroutines left after Session.Close", n)
	}
}
