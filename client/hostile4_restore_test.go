package client

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// TestHostileRestoreIDsFull: MaxPending 65,535 (documented as allowed: "the
// number of packet identifiers, which SUBSCRIBE and UNSUBSCRIBE draw from
// too"). While offline, the Session accepts 65,535 messages: every packet
// identifier is taken. It reconnects, session present 0: with no
// identifier free for the restoring SUBSCRIBE, the pending messages go
// first, and their acknowledgements free identifiers. Before, restore
// waited for an identifier while holding the pending messages back: the
// Session never got connected, and did not even reconnect when the
// connection dropped.
func TestHostileRestoreIDsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeBroker(t)
		s, err := NewSession(b, &SessionOptions{Options: Options{ClientID: "b4ids", KeepAlive: -1, MaxPending: 65535, MaxPendingBytes: 1 << 30},
			MinBackoff: time.Minute, MaxBackoff: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close(); <-s.Done() }()
		p := acceptConnect(t, b, &packet.Connack{})
		subDone := make(chan error, 1)
		go func() {
			_, err := s.Subscribe(context.Background(), Subscription{Filter: "s", QoS: 1, Handler: func(Message) {}})
			subDone <- err
		}()
		sp := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
		p.send(&packet.Suback{PacketID: sp.PacketID, ReturnCodes: []packet.SubackCode{1}})
		if err := <-subDone; err != nil {
			t.Fatal(err)
		}
		p.conn.Close()
		synctest.Wait()
		for i := range 65535 {
			if err := s.Enqueue(context.Background(), Message{Topic: "t", QoS: 1}); err != nil {
				t.Fatalf("Enqueue %d: %v", i, err)
			}
		}
		p2 := acceptConnect(t, b, &packet.Connack{SessionPresent: false})
		got := make(chan packet.Type, 1)
		go func() {
			pk, err := p2.dec.Next()
			if err != nil {
				got <- 0
				return
			}
			got <- pk.Type()
			drain(p2)
		}()
		select {
		case ty := <-got:
			t.Logf("first packet on the new connection: %v", ty)
		case <-time.After(10 * time.Minute):
			t.Errorf("nothing sent on the new connection for 10 minutes; state %v, stats %+v", s.State(), s.Stats())
		}
		// The server gives up on the silent connection: the Session should
		// reconnect (MinBackoff is a minute).
		p2.conn.Close()
		select {
		case c := <-b.conns:
			c.Close()
			t.Logf("reconnected")
		case <-time.After(10 * time.Minute):
			t.Errorf("no new connection attempt within 10 minutes of the connection's end; state %v", s.State())
		}
	})
}
