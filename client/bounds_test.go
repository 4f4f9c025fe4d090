package client

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// memBound returns the package doc's bound on the heap a client with o
// holds, in bytes.
func memBound(t *testing.T, o Options) int64 {
	t.Helper()
	cfg, _, err := o.normalize()
	if err != nil {
		t.Fatal(err)
	}
	P, W, I := int64(cfg.maxPacket), int64(cfg.writeBuffer), int64(cfg.inboxBytes)
	return 2*(W+P) + P + 32<<10 + 2*I + 2*P + cfg.maxPendingB + 650*int64(cfg.maxPending) + 400*int64(cfg.maxInflight) + 8<<10 + 2<<10
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// checkHeap fails t when the heap grew by more than o's bound since base.
// Beyond the client, the test's own peer holds a few kilobytes; 64 KiB of
// slack covers it and the runtime's noise, far below what the floods
// below would take without the bounds.
func checkHeap(t *testing.T, o Options, base int64, what string) {
	t.Helper()
	grown := liveHeap() - base
	limit := memBound(t, o) + 64<<10
	t.Logf("%s: heap grew by %d bytes (bound %d)", what, grown, limit)
	if grown > limit {
		t.Errorf("%s: heap grew by %d bytes, over the documented bound of %d", what, grown, limit)
	}
}

// smallBounds are Options with small bounds, so that floods reach them
// fast and their sum is small next to what an unbounded client takes.
func smallBounds(id string) Options {
	return Options{
		ClientID:        id,
		KeepAlive:       -1,
		MaxPacketSize:   4 << 10,
		WriteBufferSize: 4 << 10,
		InboxSize:       16,
		InboxBytes:      16 << 10,
		MaxPending:      10,
		MaxPendingBytes: 4 << 10,
	}
}

// flood writes n PUBLISHes of the given QoS to p's connection, one write
// each, until a write fails; it counts the packets written.
func flood(p *peer, n int, qos byte, wrote *atomic.Int64) {
	var b []byte
	payload := make([]byte, 16)
	for i := range n {
		pk := packet.Publish{QoS: qos, Topic: []byte("f"), Payload: payload}
		if qos > 0 {
			pk.PacketID = uint16(i%65535 + 1)
		}
		b, _ = pk.AppendTo(b[:0])
		if _, err := p.conn.Write(b); err != nil {
			return
		}
		wrote.Add(1)
	}
}

// drain reads and drops whatever the client sends, until the connection
// ends.
func drain(p *peer) {
	for {
		if _, err := p.dec.Next(); err != nil {
			return
		}
	}
}

// TestBoundServerStopsReading: a server that keeps sending QoS 1 messages
// but never reads. The PUBACKs the client owes wait for room in the write
// buffer like everything else, so the client stops reading: the server's
// writes block, and the client's heap stays within its bound. Before, the
// acknowledgements bypassed the bound and piled up for as long as the
// server kept sending.
func TestBoundServerStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := smallBounds("noread")
		var handled atomic.Int64
		o.DefaultHandler = func(Message) { handled.Add(1) }
		c, p, _ := dialPipe(t, &o, nil)
		base := liveHeap()
		const n = 200_000
		var wrote atomic.Int64
		go flood(p, n, 1, &wrote)
		synctest.Wait() // everything blocked: the server on its write
		if w := wrote.Load(); w >= n/10 {
			t.Errorf("the client read %d of %d messages from a server that reads nothing: no back-pressure", w, n)
		}
		if s := c.Stats(); s.Inbox > 16 {
			t.Errorf("inbox holds %d messages, over InboxSize 16", s.Inbox)
		}
		checkHeap(t, o, base, "server not reading")
		p.conn.Close()
	})
}

// TestBoundInboxWhileRequestAwaits: one Publish at QoS 1 awaits its PUBACK
// (which never comes) while a handler is stuck and the server floods. The
// client must read on (the handler might wait for that PUBACK), but only
// within InboxBytes: beyond it, QoS 0 messages are dropped and counted, and
// QoS 1 messages make it hold back. Before, it read on without bound while
// any request awaited its acknowledgement.
func TestBoundInboxWhileRequestAwaits(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run("qos="+string('0'+qos), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := smallBounds("await")
				release := make(chan struct{})
				var handled atomic.Int64
				o.DefaultHandler = func(Message) {
					<-release
					handled.Add(1)
				}
				c, p, _ := dialPipe(t, &o, nil)
				go drain(p) // reads the PUBLISH below, acknowledges nothing
				go c.Publish(context.Background(), Message{Topic: "up", QoS: 1})
				synctest.Wait()
				base := liveHeap()
				const n = 100_000
				var wrote atomic.Int64
				done := make(chan struct{})
				go func() {
					flood(p, n, qos, &wrote)
					close(done)
				}()
				synctest.Wait()
				s := c.Stats()
				if s.InboxBytes > int64(o.InboxBytes) {
					t.Errorf("inbox holds %d bytes, over InboxBytes %d", s.InboxBytes, o.InboxBytes)
				}
				if s.Inbox <= o.InboxSize {
					t.Errorf("inbox holds %d messages: the client did not read on past InboxSize while a handler might wait", s.Inbox)
				}
				checkHeap(t, o, base, "flood while a request awaits")
				switch qos {
				case 0:
					// All read; what did not fit was dropped.
					<-done
					if got, want := s.InboundDropped, uint64(n-s.Inbox-1); got != want {
						t.Errorf("InboundDropped = %d, want %d", got, want)
					}
				case 1:
					// Nothing dropped: the client holds back instead.
					if w := wrote.Load(); w >= n {
						t.Errorf("the client read all %d QoS 1 messages while its inbox was full", w)
					}
					if s.InboundDropped != 0 {
						t.Errorf("InboundDropped = %d QoS 1 messages", s.InboundDropped)
					}
				}
				close(release)
				<-done
				synctest.Wait()
				want := int64(n)
				if qos == 0 {
					want = int64(n) - int64(c.Stats().InboundDropped)
				}
				if got := handled.Load(); got != want {
					t.Errorf("%d messages handled, want %d", got, want)
				}
				p.conn.Close()
			})
		})
	}
}

// TestHandlerWaitsForOwnPublishUnderFlood: a handler publishes at QoS 1
// and waits for the PUBACK, which the server sends only after a flood of
// QoS 0 messages. The client reads through the flood within its bounds
// (dropping what does not fit), so the handler gets its PUBACK: no
// deadlock, bounded heap.
func TestHandlerWaitsForOwnPublishUnderFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := smallBounds("own")
		var c *Client
		handlerErr := make(chan error, 1)
		first := true
		o.DefaultHandler = func(m Message) {
			if !first {
				return
			}
			first = false
			handlerErr <- c.Publish(context.Background(), Message{Topic: "out", QoS: 1})
		}
		c, p, _ := dialPipe(t, &o, nil)
		base := liveHeap()
		const n = 50_000
		var wrote atomic.Int64
		flood(p, n, 0, &wrote) // the handler's PUBLISH waits in the pipe meanwhile
		synctest.Wait()
		checkHeap(t, o, base, "flood ahead of the handler's PUBACK")
		pub := p.expect(packet.PUBLISH).(*packet.Publish)
		p.send(&packet.Puback{PacketID: pub.PacketID})
		if err := <-handlerErr; err != nil {
			t.Fatalf("the handler's Publish: %v", err)
		}
		if c.Stats().InboundDropped == 0 {
			t.Error("no message dropped: the flood should have gone past InboxBytes")
		}
		p.conn.Close()
	})
}

// countingHandler counts Warn records.
type countingHandler struct {
	slog.Handler
	warns atomic.Int64
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}

// TestPeerLogsRateLimited: acknowledgements for identifiers not in flight
// are ignored and counted, and logged a few times, not once each (before:
// one Warn record each, 262,140 from one server).
func TestPeerLogsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &countingHandler{}
		c, p, _ := dialPipe(t, &Options{ClientID: "logs", KeepAlive: -1, Logger: slog.New(h)}, nil)
		const n = 10_000
		var b []byte
		for i := range n {
			b, _ = (&packet.Puback{PacketID: uint16(i + 1)}).AppendTo(b)
		}
		p.raw(b) // returns once the client has read it all: a pipe buffers nothing
		synctest.Wait()
		s := c.Stats()
		if s.UnexpectedAcks != n {
			t.Errorf("UnexpectedAcks = %d, want %d", s.UnexpectedAcks, n)
		}
		logged := h.warns.Load()
		if logged > 20 {
			t.Errorf("%d Warn records for %d unexpected acknowledgements", logged, n)
		}
		if s.LogsSuppressed != uint64(n-logged) {
			t.Errorf("LogsSuppressed = %d, want %d", s.LogsSuppressed, n-logged)
		}
		// A minute later, the limit lets one more through.
		time.Sleep(time.Minute)
		p.send(&packet.Puback{PacketID: 1})
		synctest.Wait()
		if got := h.warns.Load(); got != logged+1 {
			t.Errorf("%d Warn records after a minute, want %d", got, logged+1)
		}
	})
}
