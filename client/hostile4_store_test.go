package client

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// TestHostileSessionDisconnectRacesEnqueueStore: Enqueue racing a
// Session's Disconnect, many times: no Store call after Done. Before,
// Disconnect let the supervisor end, and Done close, before it closed the
// outbox, and an Enqueue in between called Store.PutOutbound after Done.
func TestHostileSessionDisconnectRacesEnqueueStore(t *testing.T) {
	var late, iters, stuck int64
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		iters++
		b := newPipeBroker(t)
		store := &doneStore{MemoryStore: NewMemoryStore()}
		s, err := NewSession(b, &SessionOptions{Options: Options{ClientID: "b4st", KeepAlive: -1, Store: store, PersistentSession: true},
			MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		store.done = s.Done()
		var p *peer
		select {
		case c := <-b.conns:
			p = &peer{t: t, conn: c, dec: packet.NewDecoder(c, 0), wait: time.Hour}
		case <-time.After(5 * time.Second):
			t.Fatal("no connection")
		}
		p.expect(packet.CONNECT)
		p.send(&packet.Connack{SessionPresent: true})
		srv := &subServer{subs: map[string]byte{}}
		go srv.serve(p)
		if err := s.WaitConnected(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := s.Enqueue(ctx, Message{Topic: "t", QoS: 1})
					cancel()
					if err != nil {
						return
					}
				}
			}()
		}
		close(start)
		time.Sleep(200 * time.Microsecond)
		s.Close()
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			stuck++
		}
		wg.Wait()
		p.conn.Close()
		if n := store.late.Load(); n > 0 {
			late += n
			if late == n {
				_, closed := s.c.out.current()
				t.Logf("iteration %d: %d Store calls after Done; outbox closed now %v, err %v", i, n, closed, s.Err())
			}
		}
	}
	lateWhat.Range(func(k, v any) bool { t.Logf("late: %v", k); return true })
	t.Logf("%d iterations: %d Store calls after Done; Done stuck %d", iters, late, stuck)
	if late > 0 {
		t.Errorf("the Session called its Store %d times after Done was closed", late)
	}
	if stuck > 0 {
		t.Errorf("Done did not close %d times", stuck)
	}
}
