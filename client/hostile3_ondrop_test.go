package client

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// gateHandler is a slog handler whose first "mqtt message dropped" record
// blocks until gate is closed (a slow log sink).
type gateHandler struct {
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (h *gateHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *gateHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "mqtt message dropped" {
		first := false
		h.once.Do(func() { first = true })
		if first {
			close(h.entered)
			<-h.gate
		}
	}
	return nil
}
func (h *gateHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *gateHandler) WithGroup(string) slog.Handler      { return h }

// TestHostileOnDropLostWhenDoneRaces: a Discard drops an expired message
// (Stats.Dropped counts it, its Publish returns ErrExpired); while the
// Discard goroutine is still in apply (here: in a slow logger), the client
// ends. Done waits for the Discard, and the OnDrop call runs before Done
// closes. Before, Done closed first and the OnDrop call, posted after the
// dispatcher had gone for good, never ran.
func TestHostileOnDropLostWhenDoneRaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		var afterDone atomic.Int64
		h := &gateHandler{gate: make(chan struct{}), entered: make(chan struct{})}
		var c *Client
		o := &Options{ClientID: "b3lost", KeepAlive: -1, WriteBufferSize: 256,
			Logger: slog.New(h),
			OnDrop: func(m Message, err error) {
				calls.Add(1)
				select {
				case <-c.Done():
					afterDone.Add(1)
				default:
				}
			}}
		c, _, _ = dialPipe(t, o, nil)
		for range 3 {
			c.Publish(ctxT(t, 50*time.Millisecond), Message{Topic: "fill", Payload: make([]byte, 300)})
		}
		pubErr := make(chan error, 1)
		go func() {
			pubErr <- c.Publish(context.Background(), Message{Topic: "old", QoS: 1, Expires: time.Now().Add(time.Second)})
		}()
		synctest.Wait()
		time.Sleep(2 * time.Second)
		go c.Discard(func(Message) bool { return false }) // drops "old" (expired) on its way
		<-h.entered
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.Disconnect(ctx)
		cancel()
		doneEarly := false
		select {
		case <-c.Done():
			doneEarly = true
		case <-time.After(10 * time.Second):
		}
		close(h.gate)
		if err := <-pubErr; !errors.Is(err, ErrExpired) {
			t.Errorf("Publish = %v, want ErrExpired", err)
		}
		<-c.Done()
		synctest.Wait()
		t.Logf("Done closed before the OnDrop call ran: %v; OnDrop calls %d (after Done: %d), Stats.Dropped %d", doneEarly, calls.Load(), afterDone.Load(), c.Stats().Dropped)
		if calls.Load() != int64(c.Stats().Dropped) {
			t.Errorf("OnDrop called %d times, Stats.Dropped = %d: a drop never reached OnDrop", calls.Load(), c.Stats().Dropped)
		}
		if afterDone.Load() > 0 {
			t.Errorf("OnDrop ran after Done was closed")
		}
	})
}

// TestHostileZombieRoomAndStats: a QoS 1 message on the wire is discarded
// (a zombie) while OnDrop is slow: its room is held until OnDrop returns,
// once; its late PUBACK frees nothing more. Stats stay sane throughout.
func TestHostileZombieRoomAndStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var got []Message
		var mu sync.Mutex
		o := &Options{ClientID: "b3zombie", KeepAlive: -1, MaxPending: 2, MaxPendingBytes: 100,
			OnDrop: func(m Message, err error) {
				<-release
				mu.Lock()
				got = append(got, m)
				mu.Unlock()
			}}
		c, p, _ := dialPipe(t, o, nil)
		errA := make(chan error, 1)
		go func() {
			errA <- c.Publish(context.Background(), Message{Topic: "a", Payload: []byte("0123456789"), QoS: 1})
		}()
		pa := *p.expect(packet.PUBLISH).(*packet.Publish)
		errA2 := make(chan error, 1)
		go func() {
			errA2 <- c.Publish(context.Background(), Message{Topic: "a2", Payload: []byte("0123456789"), QoS: 2})
		}()
		pa2 := *p.expect(packet.PUBLISH).(*packet.Publish)
		synctest.Wait()
		if n := c.Discard(func(Message) bool { return true }); n != 2 {
			t.Fatalf("Discard = %d", n)
		}
		if err := <-errA; !errors.Is(err, ErrDiscarded) {
			t.Fatalf("Publish a = %v", err)
		}
		if err := <-errA2; !errors.Is(err, ErrDiscarded) {
			t.Fatalf("Publish a2 = %v", err)
		}
		s := c.Stats()
		t.Logf("after discard: %+v", s)
		if s.Pending < 0 || s.PendingBytes < 0 || s.InFlight < 0 {
			t.Errorf("negative stats %+v", s)
		}
		// The room is held: a new Publish waits.
		errB := make(chan error, 1)
		go func() { errB <- c.Publish(context.Background(), Message{Topic: "b", Payload: []byte("x"), QoS: 1}) }()
		synctest.Wait()
		select {
		case err := <-errB:
			t.Fatalf("Publish b returned %v while the OnDrop calls hold the room", err)
		default:
		}
		// The late acknowledgements of the zombies.
		if c.cn.isClosed() {
			t.Fatalf("connection ended: %v", c.cn.error())
		}
		select {
		case <-c.Done():
			t.Fatalf("client ended: %v", c.c.rareCounts().closeErr)
		default:
		}
		p.send(&packet.Puback{PacketID: pa.PacketID})
		synctest.Wait()
		if c.cn.isClosed() {
			t.Fatalf("connection ended after the zombie's PUBACK: %v", c.cn.error())
		}
		p.send(&packet.Pubrec{PacketID: pa2.PacketID})
		p.expect(packet.PUBREL)
		p.send(&packet.Pubcomp{PacketID: pa2.PacketID})
		synctest.Wait()
		t.Logf("after late acks: %+v", c.Stats())
		close(release)
		pb := p.expect(packet.PUBLISH).(*packet.Publish)
		p.send(&packet.Puback{PacketID: pb.PacketID})
		if err := <-errB; err != nil {
			t.Fatalf("Publish b = %v", err)
		}
		synctest.Wait()
		mu.Lock()
		if len(got) != 2 || got[0].Topic != "a" || string(got[0].Payload) != "0123456789" || got[1].Topic != "a2" || string(got[1].Payload) != "0123456789" {
			t.Errorf("OnDrop got %v", got)
		}
		mu.Unlock()
		if s := c.Stats(); s.Pending != 0 || s.InFlight != 0 || s.PendingBytes != 0 {
			t.Errorf("at the end: %+v", s)
		}
		c.c.out.mu.Lock()
		used, count, w := c.c.out.ids.len(), c.c.out.count, c.c.out.weight
		c.c.out.mu.Unlock()
		if used != 0 || count != 0 || w != 0 {
			t.Errorf("ids %d, count %d, weight %d, want 0", used, count, w)
		}
		go drain(p)
	})
}
