package client

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// TestHostileSubscribeWriteFailsDoneBeforeOnDrop: a Subscribe writes its
// SUBSCRIBE on its own goroutine (flush); the write fails, so that
// goroutine ends the connection and applies the outbox's decisions
// (MaxAttempts 1 drops the message on the wire). The connection's end is
// applied by its reader alone, before Done: the OnDrop call comes before
// Done. Before, the Subscribe goroutine applied it while the reader exited
// and Done closed, and OnDrop ran after Done.
func TestHostileSubscribeWriteFailsDoneBeforeOnDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls, afterDone atomic.Int64
		h := &gateHandler{gate: make(chan struct{}), entered: make(chan struct{})}
		var c *Client
		o := &Options{ClientID: "b4sub", KeepAlive: -1, MaxAttempts: 1, Logger: slog.New(h),
			OnDrop: func(m Message, err error) {
				calls.Add(1)
				select {
				case <-c.Done():
					afterDone.Add(1)
				default:
				}
			}}
		d := &b4dialer{b: newPipeBroker(t)}
		wait := dialing(t, d, o)
		p := acceptConnect(t, d.b, &packet.Connack{})
		c = wait()
		defer func() { c.Close(); <-c.Done() }()
		pubErr := make(chan error, 1)
		go func() { pubErr <- c.Publish(context.Background(), Message{Topic: "a", QoS: 1}) }()
		p.expect(packet.PUBLISH)
		synctest.Wait()
		w := d.last()
		w.holdR.Store(true)
		w.failW.Store(true)
		subErr := make(chan error, 1)
		go func() {
			_, err := c.Subscribe(context.Background(), Subscription{Filter: "x", Handler: func(Message) {}})
			subErr <- err
		}()
		synctest.Wait() // the Subscribe's write failed; the reader is held
		close(w.release)
		<-h.entered // the end is being applied, an OnDrop call to come
		doneEarly := false
		select {
		case <-c.Done():
			doneEarly = true
		case <-time.After(10 * time.Second):
		}
		close(h.gate)
		<-c.Done()
		t.Logf("Subscribe: %v; Publish: %v", <-subErr, <-pubErr)
		synctest.Wait()
		t.Logf("Done closed with an OnDrop call to come: %v; OnDrop calls %d (after Done %d), Stats.Dropped %d",
			doneEarly, calls.Load(), afterDone.Load(), c.Stats().Dropped)
		if doneEarly {
			t.Errorf("Done closed while the Subscribe goroutine still had an OnDrop call to make")
		}
		if afterDone.Load() > 0 {
			t.Errorf("OnDrop ran after Done was closed")
		}
	})
}
