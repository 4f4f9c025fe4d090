package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// TestHostileSubscribeWriteFailsRace: as
// TestHostileSubscribeWriteFailsDoneBeforeOnDrop, without any gate: the
// Subscribe goroutine that ends the connection races with the reader.
// Counts Store calls and OnDrop calls after Done, and OnDrop calls lost.
func TestHostileSubscribeWriteFailsRace(t *testing.T) {
	var lateStore, lateDrop, lost, iters int64
	deadline := time.Now().Add(40 * time.Second)
	for i := 0; i < 1500 && time.Now().Before(deadline); i++ {
		iters++
		d := &b4dialer{b: newPipeBroker(t)}
		store := &doneStore{MemoryStore: NewMemoryStore()}
		var calls, after atomic.Int64
		var done atomic.Pointer[<-chan struct{}]
		o := &Options{ClientID: "b4race", KeepAlive: -1, MaxAttempts: 1, Store: store,
			OnDrop: func(m Message, err error) {
				calls.Add(1)
				if dp := done.Load(); dp != nil {
					select {
					case <-*dp:
						after.Add(1)
					default:
					}
				}
			}}
		ch := make(chan *Client, 1)
		go func() {
			cl, err := Dial(context.Background(), d, o)
			if err != nil {
				t.Error(err)
			}
			ch <- cl
		}()
		s := <-d.b.conns
		p := &peer{t: t, conn: s, dec: packet.NewDecoder(s, 0), wait: time.Hour}
		p.expect(packet.CONNECT)
		p.send(&packet.Connack{})
		c := <-ch
		dn := c.Done()
		done.Store(&dn)
		store.done = dn // no Store call before the drop below
		pubErr := make(chan error, 1)
		go func() { pubErr <- c.Publish(context.Background(), Message{Topic: "a", QoS: 1}) }()
		p.expect(packet.PUBLISH)
		go drain(p)
		d.last().failW.Store(true)
		c.Subscribe(context.Background(), Subscription{Filter: "x"})
		<-pubErr
		<-c.Done()
		time.Sleep(time.Millisecond)
		lateStore += store.late.Load()
		lateDrop += after.Load()
		if calls.Load() != int64(c.Stats().Dropped) {
			lost++
		}
		s.Close()
	}
	t.Logf("%d iterations: Store calls after Done %d, OnDrop calls after Done %d, iterations with an OnDrop call lost %d", iters, lateStore, lateDrop, lost)
	if lateStore+lateDrop+lost > 0 {
		t.Errorf("Done closed before the client's last Store/OnDrop calls")
	}
}
