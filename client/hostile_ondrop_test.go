package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Hostile tests of OnDrop and Discard (scripted peers and misuse).

// TestHostileOnDropLostOnDisconnect: messages dropped by Discard while the
// dispatcher is busy with a handler have their OnDrop calls queued;
// Disconnect drops the unhandled messages, but the OnDrop calls still run
// before Done. Before, Disconnect threw them away: the Publish calls
// returned ErrDiscarded and Stats.Dropped counted them, but OnDrop never
// heard of them.
//
// Promised: OnDrop "is told of every QoS 1 or 2 message the client drops
// before its acknowledgement" (Options.OnDrop).
func TestHostileOnDropLostOnDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		release := make(chan struct{})
		o := &Options{ClientID: "dropdisc", KeepAlive: -1,
			OnDrop:         func(Message, error) { calls.Add(1) },
			DefaultHandler: func(Message) { <-release }}
		c, p, _ := dialPipe(t, o, nil)
		p.send(&packet.Publish{Topic: []byte("in")})
		synctest.Wait() // a handler runs
		go drain(p)     // reads, never acknowledges
		errs := make(chan error, 3)
		for i := range 3 {
			go func() { errs <- c.Publish(context.Background(), Message{Topic: fmt.Sprint("m", i), QoS: 1}) }()
		}
		synctest.Wait()
		if n := c.Discard(func(Message) bool { return true }); n != 3 {
			t.Fatalf("Discard = %d, want 3", n)
		}
		for range 3 {
			if err := <-errs; !errors.Is(err, ErrDiscarded) {
				t.Fatalf("Publish = %v, want ErrDiscarded", err)
			}
		}
		dc := make(chan error, 1)
		go func() { dc <- c.Disconnect(context.Background()) }()
		synctest.Wait()
		close(release)
		<-dc
		<-c.Done()
		if got, dropped := calls.Load(), c.Stats().Dropped; got != int64(dropped) {
			t.Errorf("OnDrop called %d times, Stats.Dropped = %d, Publish returned ErrDiscarded 3 times", got, dropped)
		}
	})
}

// TestHostileOnDropOrderWithinDiscard: one Discard call drops the message
// it matched and, while looking for what may be written next, an older
// message that expired while the write buffer was full. OnDrop hears of
// the older one first. Before, it heard of the newer one first.
//
// Promised: OnDrop runs "in the order the messages were accepted"
// (Options.OnDrop).
func TestHostileOnDropOrderWithinDiscard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		o := &Options{ClientID: "droporder", KeepAlive: -1, WriteBufferSize: 256,
			OnDrop: func(m Message, err error) {
				mu.Lock()
				order = append(order, m.Topic+": "+err.Error())
				mu.Unlock()
			}}
		c, _, _ := dialPipe(t, o, nil)
		// The server does not read: the write buffer fills.
		for range 3 {
			c.Publish(ctxT(t, 50*time.Millisecond), Message{Topic: "fill", Payload: make([]byte, 300)})
		}
		go c.Publish(context.Background(), Message{Topic: "older", QoS: 1, Expires: time.Now().Add(time.Second)})
		synctest.Wait()
		go c.Publish(context.Background(), Message{Topic: "newer", QoS: 1})
		synctest.Wait()
		time.Sleep(2 * time.Second) // "older" expires, still waiting for room
		if n := c.Discard(func(m Message) bool { return m.Topic == "newer" }); n != 1 {
			t.Fatalf("Discard = %d, want 1", n)
		}
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(order) != 2 || !strings2HasPrefix(order[0], "older") {
			t.Errorf("OnDrop calls %q, want \"older\" (accepted first) before \"newer\"", order)
		}
	})
}

func strings2HasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// b2store is a MemoryStore that records the calls made to it after
// closed is set.
type b2store struct {
	*MemoryStore
	closed atomic.Bool
	mu     sync.Mutex
	late   []string
}

func (s *b2store) note(what string) {
	if s.closed.Load() {
		s.mu.Lock()
		s.late = append(s.late, what)
		s.mu.Unlock()
	}
}
func (s *b2store) PutOutbound(m StoredMessage) error {
	s.note(fmt.Sprintf("PutOutbound(seq %d, released %v)", m.Seq, m.Released))
	return s.MemoryStore.PutOutbound(m)
}
func (s *b2store) DeleteOutbound(seq uint64) error {
	s.note(fmt.Sprintf("DeleteOutbound(%d)", seq))
	return s.MemoryStore.DeleteOutbound(seq)
}
func (s *b2store) PutInbound(id uint16) error {
	s.note(fmt.Sprintf("PutInbound(%d)", id))
	return s.MemoryStore.PutInbound(id)
}
func (s *b2store) DeleteInbound(id uint16) error {
	s.note(fmt.Sprintf("DeleteInbound(%d)", id))
	return s.MemoryStore.DeleteInbound(id)
}

// TestHostileDiscardAfterDoneWritesStore: a Client with a Store ends with
// a QoS 2 message written and awaiting PUBREC: it stays in the Store for
// the next client (ErrPending). A Discard on the ended client returns 0
// and leaves the Store alone, so the next client sends the PUBLISH again.
// Before, it marked the stored message released, and the next client sent
// only a PUBREL: the message was lost.
//
// Promised: "Once Done is closed, the client calls its Store no more"
// (Client.Disconnect).
func TestHostileDiscardAfterDoneWritesStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &b2store{MemoryStore: NewMemoryStore()}
		o := &Options{ClientID: "discdone", PersistentSession: true, KeepAlive: -1, Store: store}
		c, p, b := dialPipe(t, o, nil)
		errc := make(chan error, 1)
		go func() { errc <- c.Publish(context.Background(), Message{Topic: "q2", Payload: []byte("x"), QoS: 2}) }()
		p.expect(packet.PUBLISH) // no PUBREC
		go drain(p)
		c.Close()
		<-c.Done()
		if err := <-errc; !errors.Is(err, ErrPending) {
			t.Fatalf("Publish = %v, want ErrPending", err)
		}
		store.closed.Store(true)
		n := c.Discard(func(Message) bool { return true })
		store.mu.Lock()
		late := slices.Clone(store.late)
		store.mu.Unlock()
		if len(late) > 0 {
			t.Errorf("Discard after Done returned %d and called the Store: %v", n, late)
		}
		store.closed.Store(false)

		// The next client on the Store, on the resumed session.
		wait := dialing(t, b, o)
		p = acceptConnect(t, b, &packet.Connack{SessionPresent: true})
		pk := p.next()
		c2 := wait()
		defer func() { go drain(p); c2.Close(); <-c2.Done() }()
		switch pk := pk.(type) {
		case *packet.Publish:
			if !pk.DUP {
				t.Errorf("re-sent PUBLISH without DUP")
			}
		default:
			t.Errorf("the next client sent %v for the pending message, want its PUBLISH again: the message is lost", pk.Type())
		}
	})
}

// TestHostileDiscardRacesAcks: Discard running in a loop while the server
// acknowledges everything, at QoS 1 and 2. Every Publish must end with nil
// or ErrDiscarded, nothing may stay pending, and OnDrop must be called
// once per ErrDiscarded. (Control.)
func TestHostileDiscardRacesAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var onDrop atomic.Int64
		o := &Options{ClientID: "discrace", KeepAlive: -1, MaxInflight: 5, MaxPending: 50,
			OnDrop: func(Message, error) { onDrop.Add(1) }}
		c, p, _ := dialPipe(t, o, nil)
		go func() { // the server: acknowledges everything
			for {
				pk, err := p.dec.Next()
				if err != nil {
					return
				}
				var ack packet.Packet
				switch pk := pk.(type) {
				case *packet.Publish:
					if pk.QoS == 1 {
						ack = &packet.Puback{PacketID: pk.PacketID}
					} else {
						ack = &packet.Pubrec{PacketID: pk.PacketID}
					}
				case *packet.Pubrel:
					ack = &packet.Pubcomp{PacketID: pk.PacketID}
				default:
					continue
				}
				b, _ := ack.AppendTo(nil)
				if _, err := p.conn.Write(b); err != nil {
					return
				}
			}
		}()
		const n = 400
		var ok, discarded atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.Publish(context.Background(), Message{Topic: fmt.Sprint("t/", i), QoS: byte(1 + i%2)})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrDiscarded):
					discarded.Add(1)
				default:
					t.Errorf("Publish = %v", err)
				}
			}()
		}
		stop := make(chan struct{})
		var total atomic.Int64
		looped := make(chan struct{})
		go func() {
			defer close(looped)
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(int64(c.Discard(func(m Message) bool { return len(m.Topic)%3 == k%3 })))
				runtime.Gosched()
			}
		}()
		wg.Wait()
		close(stop)
		<-looped
		synctest.Wait()
		t.Logf("%d ok, %d discarded", ok.Load(), discarded.Load())
		if ok.Load()+discarded.Load() != n {
			t.Errorf("%d ok + %d discarded, want %d", ok.Load(), discarded.Load(), n)
		}
		if total.Load() != discarded.Load() || onDrop.Load() != discarded.Load() {
			t.Errorf("Discard counted %d, OnDrop %d, ErrDiscarded %d", total.Load(), onDrop.Load(), discarded.Load())
		}
		if s := c.Stats(); s.Pending != 0 || s.InFlight != 0 || s.PendingBytes != 0 {
			t.Errorf("after all: %+v", s)
		}
		c.c.out.mu.Lock()
		used, count := c.c.out.ids.len(), c.c.out.count
		c.c.out.mu.Unlock()
		if used != 0 || count != 0 {
			t.Errorf("%d identifiers in use, count %d, want 0", used, count)
		}
		p.conn.Close()
	})
}
