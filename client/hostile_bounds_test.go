package client

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/devicemq/mqtt/packet"
)

// Hostile tests of the memory bounds (scripted peers and misuse).

// TestHostileDiscardedInFlightHeap: a server that reads every PUBLISH and
// acknowledges none, while the application discards each message once
// written. A discarded message on the wire keeps its packet identifier
// until its acknowledgement or the connection's end, but not its copy of
// topic and payload, whose room is given back: the heap stays within the
// documented sum. Before, each kept its copy, and the heap grew by up to
// MaxInflight messages beyond the sum.
//
// Promised (package doc, Bounds): "a client holds at most about ... + B +
// 650 B × MaxPending ... bytes of heap beyond what the caller's handlers
// keep", whatever the server does.
func TestHostileDiscardedInFlightHeap(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run("qos="+string('0'+qos), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := Options{
					ClientID:        "zombies",
					KeepAlive:       -1,
					MaxPacketSize:   64 << 10,
					WriteBufferSize: 4 << 10,
					InboxSize:       16,
					InboxBytes:      16 << 10,
					MaxPending:      10,
					MaxPendingBytes: 64 << 10,
					// MaxInflight: the default, 20
				}
				c, p, _ := dialPipe(t, &o, nil)
				go drain(p) // reads everything, acknowledges nothing
				base := liveHeap()
				var discarded atomic.Int64
				for range 100 {
					errc := make(chan error, 1)
					go func() {
						errc <- c.Publish(context.Background(), Message{Topic: "big", Payload: make([]byte, 60<<10), QoS: qos})
					}()
					synctest.Wait() // written, awaiting its acknowledgement
					c.Discard(func(Message) bool { return true })
					if err := <-errc; errors.Is(err, ErrDiscarded) {
						discarded.Add(1)
					}
				}
				s := c.Stats()
				t.Logf("%d discarded; Stats: Pending %d, PendingBytes %d, InFlight %d", discarded.Load(), s.Pending, s.PendingBytes, s.InFlight)
				checkHeap(t, o, base, "discarded messages on the wire")
				p.conn.Close()
			})
		})
	}
}

// TestHostilePubrelFloodHeap: a server that floods PUBRELs for unknown
// identifiers and QoS 2 PUBLISHes with fresh identifiers, and never
// reads. The PUBCOMPs and PUBRECs owed wait for room in the write buffer,
// so the client stops reading. (Control.)
func TestHostilePubrelFloodHeap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := smallBounds("pubrels")
		o.DefaultHandler = func(Message) {}
		c, p, _ := dialPipe(t, &o, nil)
		base := liveHeap()
		var wrote atomic.Int64
		go func() {
			var b []byte
			for i := range 200_000 {
				b = b[:0]
				if i%2 == 0 {
					b, _ = (&packet.Pubrel{PacketID: uint16(i%65535 + 1)}).AppendTo(b)
				} else {
					b, _ = (&packet.Publish{QoS: 2, PacketID: uint16(i%65535 + 1), Topic: []byte("q"), Payload: make([]byte, 8)}).AppendTo(b)
				}
				if _, err := p.conn.Write(b); err != nil {
					return
				}
				wrote.Add(1)
			}
		}()
		synctest.Wait()
		if w := wrote.Load(); w >= 20_000 {
			t.Errorf("the client read %d packets from a server that reads nothing", w)
		}
		if s := c.Stats(); s.Inbox > o.InboxSize {
			t.Errorf("inbox %d over InboxSize", s.Inbox)
		}
		checkHeap(t, o, base, "PUBREL and QoS 2 flood, server not reading")
		p.conn.Close()
	})
}
