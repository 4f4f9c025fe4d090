package client

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// doneStore is a MemoryStore that counts calls made once done is closed.
type doneStore struct {
	*MemoryStore
	done <-chan struct{}
	late atomic.Int64
}

var lateWhat sync.Map

func (s *doneStore) check(what string) {
	if s.done == nil {
		return
	}
	select {
	case <-s.done:
		s.late.Add(1)
		lateWhat.Store(what, true)
	default:
	}
}
func (s *doneStore) DeleteOutbound(seq uint64) error {
	s.check("DeleteOutbound")
	return s.MemoryStore.DeleteOutbound(seq)
}
func (s *doneStore) PutOutbound(m StoredMessage) error {
	s.check("PutOutbound")
	return s.MemoryStore.PutOutbound(m)
}

// TestHostileDiscardRacesCloseStoreAndOnDrop: Discard racing with the
// client's end, many times: no Store call after Done, and every message
// Discard counted reaches OnDrop before Done. Before, a Discard whose
// effects were applied as the client ended called the Store after Done,
// and its OnDrop calls were lost.
func TestHostileDiscardRacesCloseStoreAndOnDrop(t *testing.T) {
	var lateStore, lostDrops, iters int64
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 3000 && time.Now().Before(deadline); i++ {
		iters++
		b := newPipeBroker(t)
		store := &doneStore{MemoryStore: NewMemoryStore()}
		var calls atomic.Int64
		o := &Options{ClientID: "b3race", KeepAlive: -1, Store: store, PersistentSession: true,
			OnDrop: func(Message, error) { calls.Add(1) }}
		wait := dialing(t, b, o)
		p := acceptConnect(t, b, &packet.Connack{})
		c := wait()
		store.done = c.Done()
		go drain(p)
		for range 2 {
			go c.Publish(context.Background(), Message{Topic: "x", QoS: 1})
		}
		for c.Stats().Pending < 2 {
			time.Sleep(50 * time.Microsecond)
		}
		var wg sync.WaitGroup
		var n atomic.Int64
		wg.Add(2)
		start := make(chan struct{})
		go func() { defer wg.Done(); <-start; n.Add(int64(c.Discard(func(Message) bool { return true }))) }()
		go func() { defer wg.Done(); <-start; p.conn.Close() }()
		close(start)
		wg.Wait()
		<-c.Done()
		time.Sleep(time.Millisecond)
		if calls.Load() != n.Load() {
			lostDrops++
		}
		lateStore += store.late.Load()
	}
	t.Logf("%d iterations: %d Store calls after Done, %d iterations with OnDrop calls lost", iters, lateStore, lostDrops)
	lateWhat.Range(func(k, _ any) bool { t.Logf("late call: %v", k); return true })
	if lateStore > 0 || lostDrops > 0 {
		t.Errorf("%d Store calls after Done, %d iterations lost OnDrop calls", lateStore, lostDrops)
	}
}
