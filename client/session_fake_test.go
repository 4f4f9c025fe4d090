package client

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// sessionOnFake starts a Session on a fake broker and answers its first
// CONNECT.
func sessionOnFake(t *testing.T, o Options) (*Session, *fakeBroker, *peer) {
	t.Helper()
	f := newFakeBroker(t)
	s, err := NewSession(f.dialer(), &SessionOptions{Options: o, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := f.accept()
	p.expect(packet.CONNECT)
	p.send(&packet.Connack{})
	if err := s.WaitConnected(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	return s, f, p
}

// reconnect answers the Session's next CONNECT with session present sp.
func reconnect(t *testing.T, f *fakeBroker, sp bool) *peer {
	t.Helper()
	p := f.accept()
	c := p.expect(packet.CONNECT).(*packet.Connect)
	if c.CleanSession {
		t.Fatal("clean session on a persistent Session")
	}
	p.send(&packet.Connack{SessionPresent: sp})
	return p
}

// publishInOrder starts one Publish per message, each accepted after the
// one before, and returns their results.
func publishInOrder(t *testing.T, s *Session, msgs []Message) chan error {
	errc := make(chan error, len(msgs))
	for i, m := range msgs {
		go func() { errc <- s.Publish(context.Background(), m) }()
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().Pending < i+1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	return errc
}

// TestSessionResendOrder: on a resumed session, unacknowledged PUBLISHes go
// out again with DUP and their identifiers, and PUBRELs again, in the
// original order [MQTT-4.4.0-1], [MQTT-4.6.0-1].
func TestSessionResendOrder(t *testing.T) {
	s, f, p := sessionOnFake(t, Options{ClientID: "order", PersistentSession: true})
	var msgs []Message
	for i, q := range []byte{1, 1, 2, 2, 1} {
		msgs = append(msgs, Message{Topic: "o", Payload: []byte{byte(i)}, QoS: q})
	}
	errc := publishInOrder(t, s, msgs)
	var ids []uint16
	for i := range msgs {
		pub := p.expect(packet.PUBLISH).(*packet.Publish)
		if pub.DUP || pub.Payload[0] != byte(i) {
			t.Fatalf("first send %d: %+v", i, pub)
		}
		ids = append(ids, pub.PacketID)
	}
	p.send(&packet.Pubrec{PacketID: ids[2]})
	p.expect(packet.PUBREL)
	p.conn.Close()

	p = reconnect(t, f, true)
	for i := range msgs {
		if i == 2 {
			if rel := p.expect(packet.PUBREL).(*packet.Pubrel); rel.PacketID != ids[2] {
				t.Fatalf("PUBREL %d, want %d", rel.PacketID, ids[2])
			}
			continue
		}
		pub := p.expect(packet.PUBLISH).(*packet.Publish)
		if !pub.DUP || pub.PacketID != ids[i] || pub.Payload[0] != byte(i) {
			t.Fatalf("re-send %d: DUP %v id %d payload %v; want DUP, id %d", i, pub.DUP, pub.PacketID, pub.Payload, ids[i])
		}
	}
	p.send(&packet.Puback{PacketID: ids[0]}, &packet.Puback{PacketID: ids[1]}, &packet.Pubcomp{PacketID: ids[2]},
		&packet.Pubrec{PacketID: ids[3]}, &packet.Puback{PacketID: ids[4]})
	p.expect(packet.PUBREL)
	p.send(&packet.Pubcomp{PacketID: ids[3]})
	for range msgs {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Pending != 0 || st.InFlight != 0 {
		t.Errorf("stats after completion %+v", st)
	}
}

// TestSessionNotPresent: when the server answers session present 0 while
// the client holds state, the client subscribes again, completes the QoS 2
// messages the server had taken (PUBREC received) and sends the others
// afresh; nothing accepted is dropped.
func TestSessionNotPresent(t *testing.T) {
	s, f, p := sessionOnFake(t, Options{ClientID: "fresh", PersistentSession: true})
	subErr := make(chan error, 1)
	go func() {
		_, err := s.Subscribe(context.Background(), Subscription{Filter: "a/#", QoS: 1})
		subErr <- err
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{1}})
	if err := <-subErr; err != nil {
		t.Fatal(err)
	}
	errc := publishInOrder(t, s, []Message{{Topic: "x", QoS: 2}, {Topic: "y", QoS: 1}})
	id0 := p.expect(packet.PUBLISH).(*packet.Publish).PacketID
	p.expect(packet.PUBLISH)
	p.send(&packet.Pubrec{PacketID: id0})
	p.expect(packet.PUBREL)
	p.conn.Close()

	// The released QoS 2 message completes without its PUBCOMP: the new
	// session's server has it. The subscription is made again first, then
	// the other message goes out as a new one, without DUP
	// [MQTT-3.3.1-1].
	p = reconnect(t, f, false)
	sub = p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	if len(sub.Subscriptions) != 1 || string(sub.Subscriptions[0].Filter) != "a/#" || sub.Subscriptions[0].QoS != 1 {
		t.Errorf("subscription made again as %+v", sub.Subscriptions)
	}
	p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{1}})
	pub := p.expect(packet.PUBLISH).(*packet.Publish)
	if string(pub.Topic) != "y" || pub.DUP {
		t.Errorf("sent again as %q with DUP %v, want \"y\" without DUP", pub.Topic, pub.DUP)
	}
	p.send(&packet.Puback{PacketID: pub.PacketID})
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionQoS2AcrossReconnect: a QoS 2 message received, acknowledged
// with PUBREC and re-sent with DUP on the next connection is delivered
// once [MQTT-4.3.3-2].
func TestSessionQoS2AcrossReconnect(t *testing.T) {
	var delivered atomic.Int32
	_, f, p := sessionOnFake(t, Options{ClientID: "exactly", PersistentSession: true, DefaultHandler: func(Message) { delivered.Add(1) }})
	pub := &packet.Publish{QoS: 2, PacketID: 7, Topic: []byte("t"), Payload: []byte("once")}
	p.send(pub)
	p.expect(packet.PUBREC)
	p.conn.Close()
	p = reconnect(t, f, true)
	dup := *pub
	dup.DUP = true
	p.send(&dup)
	p.expect(packet.PUBREC)
	p.send(&packet.Pubrel{PacketID: 7})
	p.expect(packet.PUBCOMP)
	// A new message with the same identifier is new [MQTT-4.3.3-2].
	p.send(&packet.Publish{QoS: 2, PacketID: 7, Topic: []byte("t"), Payload: []byte("again")})
	p.expect(packet.PUBREC)
	time.Sleep(50 * time.Millisecond)
	if n := delivered.Load(); n != 2 {
		t.Errorf("%d deliveries, want 2", n)
	}
}

// TestSessionCredentialsPerAttempt: the Credentials callback runs for
// every connection attempt, and its user name is sent.
func TestSessionCredentialsPerAttempt(t *testing.T) {
	f := newFakeBroker(t)
	var n atomic.Int32
	s, err := NewSession(f.dialer(), &SessionOptions{
		Options:      Options{ClientID: "creds"},
		MinBackoff:   10 * time.Millisecond,
		RetryRefused: func(*ConnackError, int) time.Duration { return 10 * time.Millisecond },
		Credentials: func(context.Context) (string, []byte, error) {
			return fmt.Sprintf("user%d", n.Add(1)), []byte("pw"), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 3; i++ {
		p := f.accept()
		c := p.expect(packet.CONNECT).(*packet.Connect)
		if want := fmt.Sprintf("user%d", i); string(c.Username) != want || string(c.Password) != "pw" {
			t.Fatalf("attempt %d: user name %q", i, c.Username)
		}
		if i < 3 {
			p.send(&packet.Connack{ReturnCode: packet.BadUsernameOrPassword})
		} else {
			p.send(&packet.Connack{})
		}
	}
	if err := s.WaitConnected(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}
