package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicemq/mqtt/packet"
	"github.com/google/go-cmp/cmp"
)

// TestConnectWireForm: the CONNECT bytes of field cases BR-09 and BR-20.
func TestConnectWireForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *Options
		want string
	}{
		{
			name: "BR-09 no credentials",
			opts: &Options{ClientID: "c1", KeepAlive: 60 * time.Second},
			want: "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 63 31",
		},
		{
			name: "BR-20 will with empty message",
			opts: &Options{ClientID: "c1", KeepAlive: 60 * time.Second,
				Will: &Will{Topic: "s/status", QoS: 1, Retain: true}},
			want: "10 1A 00 04 4D 51 54 54 04 2E 00 3C 00 02 63 31 00 08 73 2F 73 74 61 74 75 73 00 00",
		},
		{
			name: "keep alive rounded up to whole seconds",
			opts: &Options{ClientID: "c1", KeepAlive: 1500 * time.Millisecond},
			want: "10 0E 00 04 4D 51 54 54 04 02 00 02 00 02 63 31",
		},
		{
			name: "keep alive off",
			opts: &Options{ClientID: "c1", KeepAlive: -1},
			want: "10 0E 00 04 4D 51 54 54 04 02 00 00 00 02 63 31",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBroker(t)
			go Dial(ctxT(t, 2*time.Second), f.dialer(), tc.opts)
			p := f.accept()
			got := make([]byte, len(h(tc.want)))
			p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(p.conn, got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(h(tc.want), got); diff != "" {
				t.Errorf("CONNECT (-want +got):\n%s", diff)
			}
		})
	}
}

func h(s string) []byte {
	var b []byte
	for _, f := range strings.Fields(s) {
		var v byte
		for _, c := range f {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'A'+10) & 0x0f
			}
		}
		b = append(b, v)
	}
	return b
}

// TestInvalidOptions: options that cannot make a valid CONNECT are refused
// before anything is dialled (BR-20 item 3).
func TestInvalidOptions(t *testing.T) {
	dialed := false
	d := dialerFunc(func() { dialed = true })
	for _, o := range []*Options{
		{Will: &Will{Topic: "s/status", QoS: 3}},
		{Will: &Will{Topic: ""}},
		{Will: &Will{Topic: "a/+"}},
		{Will: &Will{Topic: "#"}},
		{Will: &Will{Topic: "a\x00"}},
		{Password: []byte("p")},
		{KeepAlive: 65536 * time.Second},
		{ClientID: "bad\xff"},
	} {
		_, err := Dial(context.Background(), d, o)
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Dial(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
	if dialed {
		t.Error("dialled despite invalid options")
	}
}

// TestGeneratedClientID: 20 characters of [0-9a-zA-Z] [MQTT-3.1.3-5], with a
// clean session.
func TestGeneratedClientID(t *testing.T) {
	c, p := dialFake(t, nil)
	_ = p
	id := c.ClientID()
	if len(id) != 20 || strings.Trim(id, idChars) != "" {
		t.Errorf("generated client identifier %q", id)
	}
}

// TestConnackRefused: return codes 1 to 5 are five distinct typed errors and
// the connection is closed (BR-09).
func TestConnackRefused(t *testing.T) {
	for code, want := range map[packet.ConnackCode]error{
		1: ErrUnacceptableProtocolVersion,
		2: ErrIdentifierRejected,
		3: ErrServerUnavailable,
		4: ErrBadUsernameOrPassword,
		5: ErrNotAuthorized,
	} {
		f := newFakeBroker(t)
		errc := make(chan error, 1)
		go func() {
			_, err := Dial(ctxT(t, 5*time.Second), f.dialer(), &Options{ClientID: "c1"})
			errc <- err
		}()
		p := f.accept()
		p.expect(packet.CONNECT)
		p.send(&packet.Connack{ReturnCode: code})
		err := <-errc
		if !errors.Is(err, want) {
			t.Errorf("code %d: err = %v, want %v", code, err, want)
		}
		for _, other := range []error{ErrUnacceptableProtocolVersion, ErrIdentifierRejected, ErrServerUnavailable, ErrBadUsernameOrPassword, ErrNotAuthorized} {
			if other != want && errors.Is(err, other) {
				t.Errorf("code %d matches %v too", code, other)
			}
		}
		var ce *ConnackError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Errorf("code %d: errors.As = %v", code, ce)
		}
		p.expectEOF()
	}
}

// TestConnackBad: malformed or unexpected answers to CONNECT close the
// connection with a clear error (BR-09 items 3-5).
func TestConnackBad(t *testing.T) {
	for _, tc := range []struct {
		name, wire string
		want       error
	}{
		{"MQTT 5 shaped CONNACK", "20 03 00 84 00", packet.ErrMalformed},
		{"reserved return code", "20 02 00 06", packet.ErrMalformed},
		{"CONNACK with flag bit", "21 02 00 00", packet.ErrMalformed},
		{"PINGRESP first", "D0 00", ErrProtocolViolation},
		{"PUBLISH first", "30 05 00 01 61 68 69", ErrProtocolViolation},
		{"session present on clean session", "20 02 01 00", ErrProtocolViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBroker(t)
			errc := make(chan error, 1)
			go func() {
				_, err := Dial(ctxT(t, 5*time.Second), f.dialer(), &Options{ClientID: "c1"})
				errc <- err
			}()
			p := f.accept()
			p.expect(packet.CONNECT)
			p.sendHex(tc.wire)
			if err := <-errc; !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			p.expectEOF()
		})
	}
}

// TestConnectTimeout: a server that accepts TCP and never answers CONNECT
// makes Dial fail when ConnectTimeout or ctx ends, naming the stage (BR-18).
func TestConnectTimeout(t *testing.T) {
	t.Run("ConnectTimeout", func(t *testing.T) {
		f := newFakeBroker(t)
		errc := make(chan error, 1)
		go func() {
			_, err := Dial(context.Background(), f.dialer(), &Options{ConnectTimeout: 300 * time.Millisecond})
			errc <- err
		}()
		p := f.accept()
		p.expect(packet.CONNECT)
		err := <-errc
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "CONNACK") {
			t.Errorf("err = %v, want a deadline error naming CONNACK", err)
		}
		p.expectEOF()
	})
	t.Run("ctx cancelled", func(t *testing.T) {
		f := newFakeBroker(t)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := Dial(ctx, f.dialer(), nil)
			errc <- err
		}()
		p := f.accept()
		p.expect(packet.CONNECT)
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		p.expectEOF()
	})
	t.Run("server closes", func(t *testing.T) {
		f := newFakeBroker(t)
		errc := make(chan error, 1)
		go func() {
			_, err := Dial(ctxT(t, 5*time.Second), f.dialer(), nil)
			errc <- err
		}()
		p := f.accept()
		p.expect(packet.CONNECT)
		p.conn.Close()
		if err := <-errc; !errors.Is(err, io.EOF) {
			t.Errorf("err = %v, want io.EOF [MQTT-3.2.2-6]", err)
		}
	})
}

// TestKeepAlive: PINGREQ when idle for the keep alive interval, exactly;
// the connection stays up while PINGRESPs come.
func TestKeepAlive(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		c, p, _ := dialPipe(t, &Options{ClientID: "ka", KeepAlive: time.Second}, nil)
		start := time.Now()
		for i := 1; i <= 3; i++ {
			tmExpectAt(t, p, packet.PINGREQ, start, time.Duration(i)*time.Second)
			p.send(&packet.Pingresp{})
		}
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
	})
}

// TestPingTimeout: no PINGRESP closes the connection with ErrPingTimeout,
// exactly PingTimeout after the PINGREQ.
func TestPingTimeout(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		c, p, _ := dialPipe(t, &Options{ClientID: "pt", KeepAlive: time.Second, PingTimeout: 200 * time.Millisecond}, nil)
		start := time.Now()
		tmExpectAt(t, p, packet.PINGREQ, start, time.Second)
		if err := tmDoneAt(t, c, start, 1200*time.Millisecond); !errors.Is(err, ErrPingTimeout) {
			t.Fatalf("Err = %v, want ErrPingTimeout", err)
		}
		p.expectEOF()
	})
}

// TestSeveralPacketsInOneRead is field case BR-10.
func TestSeveralPacketsInOneRead(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "br10"})
	got := make(chan Message, 4)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(ctxT(t, 5*time.Second), Subscription{Filter: "xmas/#", Handler: func(m Message) { got <- m }})
		errc <- err
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	if sub.PacketID != 1 {
		t.Fatalf("SUBSCRIBE identifier %d", sub.PacketID)
	}
	p.sendHex("90 03 00 01 00" +
		" 30 18 00 08 78 6D 61 73 2F 72 65 64 30 2E 35 33 33 37 35 35 33 30 32 34 32 39" +
		" 30 18 00 08 78 6D 61 73 2F 72 65 64 30 2E 35 33 33 37 35 35 33 30 32 34 32 39" +
		" D0 00")
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case m := <-got:
			if m.Topic != "xmas/red" || string(m.Payload) != "0.533755302429" {
				t.Errorf("message %q %q", m.Topic, m.Payload)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("message not delivered")
		}
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestMalformedFromServer: a malformed packet closes the connection with a
// *packet.Error (BR-05, BR-07, BR-04).
func TestMalformedFromServer(t *testing.T) {
	for _, tc := range []struct {
		name, wire string
		want       error
	}{
		{"PUBLISH QoS 3", "36 07 00 03 61 2F 62 00 01", packet.ErrMalformed},
		{"SUBACK flags 0010", "92 03 00 01 00", packet.ErrMalformed},
		{"PUBACK flags 0010", "42 02 00 01", packet.ErrMalformed},
		{"PUBREL flags 0000", "60 02 00 01", packet.ErrMalformed},
		{"CONNACK flag bit", "21 02 00 00", packet.ErrMalformed},
		{"empty topic", "30 04 00 00 68 69", packet.ErrMalformed},
		{"topic #", "30 05 00 01 23 68 69", packet.ErrMalformed},
		{"huge declared length", "30 FF FF FF 7F", packet.ErrPacketTooLarge},
		{"second CONNACK", "20 02 00 00", ErrProtocolViolation},
		{"SUBSCRIBE from the server", "82 06 00 01 00 01 61 00", ErrProtocolViolation},
		{"PINGREQ from the server", "C0 00", ErrProtocolViolation},
		{"DISCONNECT from the server", "E0 00", ErrProtocolViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p := dialFake(t, &Options{ClientID: "m"})
			p.sendHex(tc.wire)
			p.expectEOF()
			<-c.Done()
			if err := c.Err(); !errors.Is(err, tc.want) {
				t.Errorf("Err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestAckOfWrongKind: a PUBACK for a QoS 2 message is a protocol violation;
// the waiting Publish learns the connection was lost.
func TestAckOfWrongKind(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "w"})
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(ctxT(t, 5*time.Second), Message{Topic: "a", QoS: 2}) }()
	pub := p.expect(packet.PUBLISH).(*packet.Publish)
	p.send(&packet.Puback{PacketID: pub.PacketID})
	if err := <-errc; !errors.Is(err, ErrConnectionLost) || !errors.Is(err, ErrProtocolViolation) {
		t.Errorf("Publish = %v, want ErrConnectionLost and ErrProtocolViolation", err)
	}
}

// TestPublishQoS: the QoS 1 and 2 exchanges from the sender's side [MQTT-4.3.2-1],
// [MQTT-4.3.3-1].
func TestPublishQoS(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "q"})
	ctx := ctxT(t, 5*time.Second)
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(ctx, Message{Topic: "a/b", Payload: []byte("one"), QoS: 1}) }()
	pub := p.expect(packet.PUBLISH).(*packet.Publish)
	if pub.QoS != 1 || pub.DUP || pub.PacketID == 0 || string(pub.Payload) != "one" {
		t.Fatalf("PUBLISH %+v", pub)
	}
	p.send(&packet.Puback{PacketID: pub.PacketID})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { errc <- c.Publish(ctx, Message{Topic: "a/b", Payload: []byte("two"), QoS: 2, Retain: true}) }()
	pub = p.expect(packet.PUBLISH).(*packet.Publish)
	if pub.QoS != 2 || !pub.Retain || pub.PacketID == 0 {
		t.Fatalf("PUBLISH %+v", pub)
	}
	id := pub.PacketID
	p.send(&packet.Pubrec{PacketID: id})
	if rel := p.expect(packet.PUBREL).(*packet.Pubrel); rel.PacketID != id {
		t.Fatalf("PUBREL id %d, want %d", rel.PacketID, id)
	}
	select {
	case err := <-errc:
		t.Fatalf("Publish returned before PUBCOMP: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.send(&packet.Pubcomp{PacketID: id})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestReceiveQoS2ExactlyOnce: a QoS 2 PUBLISH re-sent with DUP before PUBREL
// is acknowledged again but delivered once; after PUBCOMP the identifier is
// new again [MQTT-4.3.3-2].
func TestReceiveQoS2ExactlyOnce(t *testing.T) {
	got := make(chan Message, 10)
	c, p := dialFake(t, &Options{ClientID: "x", DefaultHandler: func(m Message) { got <- m }})
	_ = c
	pub := &packet.Publish{QoS: 2, PacketID: 5, Topic: []byte("t"), Payload: []byte("once")}
	p.send(pub)
	if rec := p.expect(packet.PUBREC).(*packet.Pubrec); rec.PacketID != 5 {
		t.Fatalf("PUBREC id %d", rec.PacketID)
	}
	dup := *pub
	dup.DUP = true
	p.send(&dup)
	p.expect(packet.PUBREC)
	p.send(&packet.Pubrel{PacketID: 5})
	if comp := p.expect(packet.PUBCOMP).(*packet.Pubcomp); comp.PacketID != 5 {
		t.Fatalf("PUBCOMP id %d", comp.PacketID)
	}
	p.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: []byte("t"), Payload: []byte("again")})
	p.expect(packet.PUBREC)
	var payloads []string
	for range 2 {
		select {
		case m := <-got:
			payloads = append(payloads, string(m.Payload))
		case <-time.After(5 * time.Second):
			t.Fatal("message not delivered")
		}
	}
	select {
	case m := <-got:
		t.Fatalf("extra delivery %q", m.Payload)
	case <-time.After(100 * time.Millisecond):
	}
	if diff := cmp.Diff([]string{"once", "again"}, payloads); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

// TestAckAfterHandlerInOrder: a QoS 1 message is acknowledged after its
// handler returns, and acknowledgements go out in arrival order
// [MQTT-4.6.0-2].
func TestAckAfterHandlerInOrder(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	c, p := dialFake(t, &Options{ClientID: "o", DefaultHandler: func(m Message) {
		if string(m.Payload) == "1" {
			<-release
		}
		mu.Lock()
		seen = append(seen, string(m.Payload))
		mu.Unlock()
	}})
	_ = c
	for i, s := range []string{"1", "2", "3"} {
		p.send(&packet.Publish{QoS: 1, PacketID: uint16(10 + i), Topic: []byte("t"), Payload: []byte(s)})
	}
	p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if pk, err := p.dec.Next(); err == nil {
		t.Fatalf("%v sent before the handler returned", pk.Type())
	}
	p.dec.Reset(p.conn)
	close(release)
	for i := range 3 {
		ack := p.expect(packet.PUBACK).(*packet.Puback)
		if ack.PacketID != uint16(10+i) {
			t.Errorf("PUBACK %d is for %d", i, ack.PacketID)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"1", "2", "3"}, seen); diff != "" {
		t.Errorf("handler order (-want +got):\n%s", diff)
	}
}

// TestSlowHandler: a handler slower than the keep alive neither stalls acks
// nor causes a false keep alive timeout (BR-17): a Publish completes while
// it runs, PINGREQs come every keep alive and are answered, and the PUBACK
// of its message goes when it returns, not before.
func TestSlowHandler(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const slow = 2500 * time.Millisecond
		c, p, _ := dialPipe(t, &Options{ClientID: "slow", KeepAlive: time.Second, PingTimeout: 500 * time.Millisecond,
			DefaultHandler: func(m Message) { <-time.After(slow) }}, nil)
		start := time.Now()
		p.send(&packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("slow/x")})
		errc := make(chan error, 1)
		go func() {
			errc <- c.Publish(context.Background(), Message{Topic: "out/y", QoS: 1})
		}()
		published, acked := false, false
		pings := 0
		for !published || !acked || time.Since(start) < 5*time.Second {
			switch pk := p.next().(type) {
			case *packet.Pingreq:
				pings++
				if d := time.Since(start); d != time.Duration(pings)*time.Second {
					t.Errorf("PINGREQ %d at %v, want at %v", pings, d, time.Duration(pings)*time.Second)
				}
				p.send(&packet.Pingresp{})
			case *packet.Publish:
				p.send(&packet.Puback{PacketID: pk.PacketID})
				if err := <-errc; err != nil {
					t.Fatalf("Publish during a slow handler: %v", err)
				}
				if d := time.Since(start); d >= slow {
					t.Errorf("Publish completed at %v, after the handler returned", d)
				}
				published = true
			case *packet.Puback:
				if d := time.Since(start); d != slow {
					t.Errorf("PUBACK at %v, want when the handler returned, at %v", d, slow)
				}
				acked = true
			default:
				t.Fatalf("unexpected %v", pk.Type())
			}
		}
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
	})
}

// TestPublishRefused: invalid topics and QoS are refused before anything is
// written, and the connection stays up (BR-07, BR-05 item 2).
func TestPublishRefused(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "r"})
	ctx := ctxT(t, 5*time.Second)
	for _, m := range []Message{
		{Topic: "hello/+/hi"}, {Topic: "cmnd/#/power"}, {Topic: ""}, {Topic: "a\x00"}, {Topic: "\xff"},
		{Topic: "a", QoS: 3},
	} {
		if err := c.Publish(ctx, m); !errors.Is(err, packet.ErrInvalid) {
			t.Errorf("Publish(%q, QoS %d) = %v, want packet.ErrInvalid", m.Topic, m.QoS, err)
		}
	}
	for _, f := range []string{"sport/tennis#", "sport+", "#/a", "a/#/b", "", "a\x00"} {
		if _, err := c.Subscribe(ctx, Subscription{Filter: f}); !errors.Is(err, packet.ErrInvalid) {
			t.Errorf("Subscribe(%q) = %v, want packet.ErrInvalid", f, err)
		}
		if err := c.Unsubscribe(ctx, f); !errors.Is(err, packet.ErrInvalid) {
			t.Errorf("Unsubscribe(%q) = %v, want packet.ErrInvalid", f, err)
		}
	}
	if _, err := c.Subscribe(ctx); !errors.Is(err, packet.ErrInvalid) {
		t.Errorf("Subscribe() = %v, want packet.ErrInvalid", err)
	}
	for _, topic := range []string{"/", "a//b", " ", "$shadow/operation/PRODUCTID1/dev01"} {
		if err := c.Publish(ctx, Message{Topic: topic}); err != nil {
			t.Fatal(err)
		}
		if pub := p.expect(packet.PUBLISH).(*packet.Publish); string(pub.Topic) != topic {
			t.Errorf("topic %q written as %q", topic, pub.Topic)
		}
	}
}

// TestSubscribeReturnCodes: granted QoS and 0x80 per filter; refused
// filters get no handler.
func TestSubscribeReturnCodes(t *testing.T) {
	got := make(chan string, 4)
	c, p := dialFake(t, &Options{ClientID: "s", DefaultHandler: func(m Message) { got <- "default " + m.Topic }})
	type result struct {
		codes []packet.SubackCode
		err   error
	}
	rc := make(chan result, 1)
	go func() {
		codes, err := c.Subscribe(ctxT(t, 5*time.Second),
			Subscription{Filter: "a/+", QoS: 2, Handler: func(m Message) { got <- "a " + m.Topic }},
			Subscription{Filter: "b/#", QoS: 1, Handler: func(m Message) { got <- "b " + m.Topic }})
		rc <- result{codes, err}
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	if len(sub.Subscriptions) != 2 || sub.Subscriptions[0].QoS != 2 || string(sub.Subscriptions[1].Filter) != "b/#" {
		t.Fatalf("SUBSCRIBE %+v", sub)
	}
	p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{1, packet.SubackFailure}},
		&packet.Publish{Topic: []byte("a/x")}, &packet.Publish{Topic: []byte("b/y")})
	r := <-rc
	if !errors.Is(r.err, ErrSubscriptionFailed) || !strings.Contains(r.err.Error(), "b/#") {
		t.Errorf("err = %v, want ErrSubscriptionFailed naming b/#", r.err)
	}
	if diff := cmp.Diff([]packet.SubackCode{1, 0x80}, r.codes); diff != "" {
		t.Errorf("codes (-want +got):\n%s", diff)
	}
	for _, want := range []string{"a a/x", "default b/y"} {
		select {
		case s := <-got:
			if s != want {
				t.Errorf("delivered %q, want %q", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("not delivered")
		}
	}
}

// TestSubackCountMismatch: a SUBACK with a different number of return codes
// is a protocol violation [MQTT-3.9.3-1].
func TestSubackCountMismatch(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "s"})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(ctxT(t, 5*time.Second), Subscription{Filter: "a"}, Subscription{Filter: "b"})
		errc <- err
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	p.send(&packet.Suback{PacketID: sub.PacketID, ReturnCodes: []packet.SubackCode{0}})
	if err := <-errc; !errors.Is(err, ErrProtocolViolation) {
		t.Errorf("err = %v, want ErrProtocolViolation", err)
	}
}

// TestDisconnect: DISCONNECT is the last packet, then the connection is
// closed; Disconnect and Close are idempotent; later calls fail with
// ErrClosed (BR-20 item 4, [MQTT-3.14.4-1/2]).
func TestDisconnect(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "d"})
	ctx := ctxT(t, 5*time.Second)
	if err := c.Publish(ctx, Message{Topic: "last"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	p.expect(packet.PUBLISH)
	p.expect(packet.DISCONNECT)
	p.expectEOF()
	if err := c.Disconnect(ctx); err != nil {
		t.Errorf("second Disconnect = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after Disconnect = %v", err)
	}
	if err := c.Publish(ctx, Message{Topic: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Disconnect = %v, want ErrClosed", err)
	}
	if _, err := c.Subscribe(ctx, Subscription{Filter: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Disconnect = %v, want ErrClosed", err)
	}
	if err := c.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err = %v, want ErrClosed", err)
	}
}

// TestDisconnectFailsWaiters: requests waiting for acknowledgements end with
// ErrConnectionLost when the client disconnects.
func TestDisconnectFailsWaiters(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "d"})
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(context.Background(), Message{Topic: "a", QoS: 1}) }()
	p.expect(packet.PUBLISH)
	c.Close()
	if err := <-errc; !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Publish = %v, want ErrConnectionLost", err)
	}
}

// TestConnectionLoss: the server dropping the link ends the client, and the
// error says so.
func TestConnectionLoss(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "l"})
	p.conn.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection loss not noticed")
	}
	if err := c.Err(); err == nil || errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("Err = %v", err)
	}
	if err := c.Publish(context.Background(), Message{Topic: "a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after loss = %v, want ErrClosed", err)
	}
	if err := c.Disconnect(context.Background()); err != nil {
		t.Errorf("Disconnect after loss = %v", err)
	}
}

// TestPacketIdentifiers: identifiers are non-zero and unique while in flight;
// with all 65,535 in flight Publish waits until its context ends; an
// acknowledgement frees one, which is then reused (BR-15).
func TestPacketIdentifiers(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the identifier space")
	}
	c, p := dialFake(t, &Options{ClientID: "ids", MaxInflight: 65535, MaxPending: 65535})
	// Each Publish waits for its PUBACK; the fake broker reads the PUBLISH,
	// never acknowledges it, and cancels the Publish's context instead, so
	// that its identifier stays in flight.
	cancels := make(chan context.CancelFunc, 1)
	readDone := make(chan error, 1)
	go func() {
		seen := make(map[uint16]bool, 65535)
		for range 65535 {
			cancel := <-cancels
			p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			pk, err := p.dec.Next()
			cancel()
			if err != nil {
				readDone <- err
				return
			}
			id := pk.(*packet.Publish).PacketID
			if id == 0 || seen[id] {
				readDone <- fmt.Errorf("identifier %d is 0 or in flight", id)
				return
			}
			seen[id] = true
		}
		readDone <- nil
	}()
	for i := range 65535 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels <- cancel
		if err := c.Publish(ctx, Message{Topic: "t", QoS: 1}); !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotSent) {
			t.Fatalf("Publish %d = %v, want a cancellation after sending", i, err)
		}
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	// Publish meets the full in-flight window first; SUBSCRIBE, which draws
	// from the same identifiers, meets their exhaustion.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Publish(ctx, Message{Topic: "t", QoS: 1}); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("Publish with every identifier in flight = %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Subscribe(ctx, Subscription{Filter: "t"}); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotSent) || !strings.Contains(err.Error(), "identifier") {
		t.Fatalf("Subscribe with every identifier in flight = %v", err)
	}
	p.send(&packet.Puback{PacketID: 42})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Subscribe(ctxT(t, 5*time.Second), Subscription{Filter: "t"})
		errc <- err
	}()
	sub := p.expect(packet.SUBSCRIBE).(*packet.Subscribe)
	if sub.PacketID != 42 {
		t.Errorf("identifier %d, want the freed 42", sub.PacketID)
	}
	p.send(&packet.Suback{PacketID: 42, ReturnCodes: []packet.SubackCode{0}})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	p.send(&packet.Puback{PacketID: 43})
	go func() { errc <- c.Publish(ctxT(t, 5*time.Second), Message{Topic: "t", QoS: 1}) }()
	if pub := p.expect(packet.PUBLISH).(*packet.Publish); pub.PacketID != 42 && pub.PacketID != 43 {
		t.Errorf("identifier %d, want a freed one, 42 or 43", pub.PacketID)
	}
}

// TestInflightWindow: no more than MaxInflight QoS 1 and 2 PUBLISHes await
// acknowledgements; the next waits for one to complete.
func TestInflightWindow(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "win", MaxInflight: 3})
	errc := make(chan error, 5)
	for i := range 5 {
		go func() {
			errc <- c.Publish(ctxT(t, 10*time.Second), Message{Topic: "w", Payload: []byte{byte(i)}, QoS: 1})
		}()
	}
	quiet := func() {
		t.Helper()
		p.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if pk, err := p.dec.Next(); err == nil {
			t.Fatalf("%v sent while the window is full", pk.Type())
		}
		p.dec.Reset(p.conn)
	}
	var ids []uint16
	for range 3 {
		ids = append(ids, p.expect(packet.PUBLISH).(*packet.Publish).PacketID)
	}
	quiet()
	p.send(&packet.Puback{PacketID: ids[0]})
	ids = append(ids, p.expect(packet.PUBLISH).(*packet.Publish).PacketID)
	quiet()
	p.send(&packet.Puback{PacketID: ids[1]})
	ids = append(ids, p.expect(packet.PUBLISH).(*packet.Publish).PacketID)
	for _, id := range ids[2:] {
		p.send(&packet.Puback{PacketID: id})
	}
	for range 5 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPublishQoS0Allocs: a QoS 0 Publish allocates nothing once warm.
func TestPublishQoS0Allocs(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "alloc"})
	go io.Copy(io.Discard, p.conn)
	ctx := context.Background()
	m := Message{Topic: "devices/ABCDEFGHIJ/dev01/data", Payload: bytes.Repeat([]byte("x"), 64)}
	for range 100 {
		c.Publish(ctx, m)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if err := c.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}); n > 0 {
		t.Errorf("QoS 0 Publish: %v allocs, want 0", n)
	}
}

type dialerFunc func()

type netConn = net.Conn

func (f dialerFunc) Dial(context.Context) (netConn, error) {
	f()
	return nil, errors.New("no dialling in this test")
}

// TestSlowHandlerFullInbox: when handlers fall so far behind that the inbox
// is full, the client stops reading (back-pressure) and a PINGRESP may wait
// unread behind the messages; that must not be taken for a dead server.
// The handlers run back to back, at 0, 2 and 4 s.
func TestSlowHandlerFullInbox(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		starts := make(chan time.Time, 3)
		c, p, _ := dialPipe(t, &Options{ClientID: "full", KeepAlive: time.Second, PingTimeout: 300 * time.Millisecond, InboxSize: 1,
			DefaultHandler: func(m Message) { starts <- time.Now(); <-time.After(2 * time.Second) }}, nil)
		start := time.Now()
		for i := range 3 {
			p.send(&packet.Publish{Topic: []byte("slow"), Payload: []byte{byte(i)}})
		}
		end := start.Add(7 * time.Second)
		for time.Now().Before(end) {
			p.conn.SetReadDeadline(end)
			pk, err := p.dec.Next()
			if err != nil {
				break
			}
			if pk.Type() == packet.PINGREQ {
				p.send(&packet.Pingresp{}) // read once the reader reads again
			}
		}
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended while the inbox was full: %v", err)
		}
		for i := range 3 {
			select {
			case at := <-starts:
				if d, want := at.Sub(start), time.Duration(2*i)*time.Second; d != want {
					t.Errorf("handler %d started at %v, want %v", i, d, want)
				}
			default:
				t.Fatalf("%d messages handled, want 3", i)
			}
		}
	})
}
