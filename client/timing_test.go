package client

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// Timing tests: keep alive, ping timeout, write deadline and reconnect
// backoff, inside testing/synctest bubbles over pipes, so that every time
// the behaviour defines is checked to the nanosecond of the bubble's clock
// and no test waits for the wall clock.

// tmBubble runs f inside a synctest bubble (for test files that do not
// import testing/synctest themselves).
func tmBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, f)
}

// tmWaitUntil waits until start+d of the bubble's clock.
func tmWaitUntil(start time.Time, d time.Duration) {
	if w := time.Until(start.Add(d)); w > 0 {
		<-time.After(w)
	}
}

// tmExpectAt reads the next packet, which must be of type want and come
// exactly at start+at.
func tmExpectAt(t *testing.T, p *peer, want packet.Type, start time.Time, at time.Duration) packet.Packet {
	t.Helper()
	pk := p.expect(want)
	if got := time.Since(start); got != at {
		t.Errorf("%v at %v, want at %v", want, got, at)
	}
	return pk
}

// tmDoneAt waits for c's end, which must come exactly at start+at, and
// returns c.Err().
func tmDoneAt(t *testing.T, c *Client, start time.Time, at time.Duration) error {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(time.Hour):
		t.Fatalf("connection still up after an hour, want its end at %v", at)
	}
	if got := time.Since(start); got != at {
		t.Errorf("connection ended at %v, want at %v", got, at)
	}
	return c.Err()
}

// tmDial is dialPipe that also returns the CONNECT the client sent.
func tmDial(t *testing.T, opts *Options) (*Client, *peer, *packet.Connect) {
	t.Helper()
	b := newPipeBroker(t)
	wait := dialing(t, b, opts)
	p := b.accept()
	connect := p.expect(packet.CONNECT).(*packet.Connect).Clone()
	p.send(&packet.Connack{})
	c := wait()
	t.Cleanup(func() { c.Close(); <-c.Done() })
	return c, p, connect
}

// tmSendAsync writes packets to the client on a goroutine of its own: a
// pipe write blocks until the client reads it all, which a client that
// holds back reading does not do.
func tmSendAsync(t *testing.T, p *peer, ps ...packet.Packet) <-chan error {
	t.Helper()
	var b []byte
	for _, pk := range ps {
		var err error
		if b, err = pk.AppendTo(b); err != nil {
			t.Fatal(err)
		}
	}
	ch := make(chan error, 1)
	go func() {
		_, err := p.conn.Write(b)
		ch <- err
	}()
	return ch
}

// tmPacket is a packet the client sent, as tmPump saw it.
type tmPacket struct {
	typ packet.Type
	id  uint16
	at  time.Duration // since the pump's start
}

// tmPump reads everything the client sends on its own goroutine, so that
// the client's writes never block, and hands the packets on, stamped. The
// channel is closed when the connection ends. The peer's decoder is the
// pump's from then on.
func tmPump(p *peer, start time.Time) <-chan tmPacket {
	ch := make(chan tmPacket, 4096)
	go func() {
		defer close(ch)
		p.conn.SetReadDeadline(time.Time{})
		for {
			pk, err := p.dec.Next()
			if err != nil {
				return
			}
			tp := tmPacket{typ: pk.Type(), at: time.Since(start)}
			switch pk := pk.(type) {
			case *packet.Publish:
				tp.id = pk.PacketID
			case *packet.Puback:
				tp.id = pk.PacketID
			case *packet.Pubrec:
				tp.id = pk.PacketID
			case *packet.Pubrel:
				tp.id = pk.PacketID
			case *packet.Pubcomp:
				tp.id = pk.PacketID
			}
			ch <- tp
		}
	}()
	return ch
}

// tmNext returns the next packet from a pump, failing when none comes
// within an hour.
func tmNext(t *testing.T, ch <-chan tmPacket) tmPacket {
	t.Helper()
	select {
	case tp, ok := <-ch:
		if !ok {
			t.Fatal("connection ended")
		}
		return tp
	case <-time.After(time.Hour):
		t.Fatal("nothing sent for an hour")
		return tmPacket{}
	}
}

// --- Keep alive ---

// TestKeepAliveAfterLastPacket: an idle client sends PINGREQ exactly one
// keep alive after the last packet it sent and received, not on a fixed
// schedule since CONNECT.
func TestKeepAliveAfterLastPacket(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		c, p, _ := dialPipe(t, &Options{ClientID: "ka-last", KeepAlive: 10 * time.Second}, nil)
		start := time.Now()
		for _, at := range []time.Duration{3 * time.Second, 7 * time.Second} {
			tmWaitUntil(start, at)
			if err := c.Publish(context.Background(), Message{Topic: "up"}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			tmExpectAt(t, p, packet.PUBLISH, start, at)
			p.send(&packet.Publish{Topic: []byte("down")})
		}
		tmExpectAt(t, p, packet.PINGREQ, start, 17*time.Second)
		p.send(&packet.Pingresp{})
		tmExpectAt(t, p, packet.PINGREQ, start, 27*time.Second)
		p.send(&packet.Pingresp{})
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
	})
}

// TestKeepAliveWhileOnlySending: a client that keeps sending (QoS 0 every
// half keep alive) but receives nothing still sends PINGREQ one keep alive
// after the last packet received: a link that only carries data one way
// may be dead the other way. An implementation that looks at what it sent
// alone never pings here.
func TestKeepAliveWhileOnlySending(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		c, p, _ := dialPipe(t, &Options{ClientID: "ka-send", KeepAlive: 10 * time.Second}, nil)
		start := time.Now()
		publish := func(at time.Duration) {
			t.Helper()
			tmWaitUntil(start, at)
			if err := c.Publish(context.Background(), Message{Topic: "up"}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			tmExpectAt(t, p, packet.PUBLISH, start, at)
		}
		publish(2500 * time.Millisecond)
		publish(7500 * time.Millisecond)
		tmExpectAt(t, p, packet.PINGREQ, start, 10*time.Second) // nothing received since CONNACK
		p.send(&packet.Pingresp{})
		publish(12500 * time.Millisecond)
		publish(17500 * time.Millisecond)
		tmExpectAt(t, p, packet.PINGREQ, start, 20*time.Second) // nothing received since the PINGRESP
		p.send(&packet.Pingresp{})
		publish(22500 * time.Millisecond)
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
	})
}

// TestKeepAliveWhileOnlyReceiving: a client that receives all the time but
// sends nothing sends PINGREQ one keep alive after its last packet sent
// [MQTT-3.1.2-23]: the server counts what it receives. An implementation
// that looks at what it received alone never pings here.
func TestKeepAliveWhileOnlyReceiving(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		c, p, _ := dialPipe(t, &Options{ClientID: "ka-recv", KeepAlive: 10 * time.Second}, nil)
		start := time.Now()
		receive := func(at time.Duration) {
			tmWaitUntil(start, at)
			p.send(&packet.Publish{Topic: []byte("down")})
		}
		receive(2500 * time.Millisecond)
		receive(7500 * time.Millisecond)
		tmExpectAt(t, p, packet.PINGREQ, start, 10*time.Second) // nothing sent since CONNECT
		p.send(&packet.Pingresp{})
		receive(12500 * time.Millisecond)
		receive(17500 * time.Millisecond)
		tmExpectAt(t, p, packet.PINGREQ, start, 20*time.Second) // nothing sent since the PINGREQ
		p.send(&packet.Pingresp{})
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
	})
}

// TestKeepAliveTrafficBothWays: no PINGREQ while packets flow both ways
// more often than the keep alive; once they stop, PINGREQ comes exactly one
// keep alive after the last of them. An implementation that pings on a
// fixed schedule fails here.
func TestKeepAliveTrafficBothWays(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		c, p, _ := dialPipe(t, &Options{ClientID: "ka-both", KeepAlive: 10 * time.Second}, nil)
		start := time.Now()
		at := time.Duration(0)
		for at < time.Minute {
			at += 4 * time.Second
			tmWaitUntil(start, at)
			if err := c.Publish(context.Background(), Message{Topic: "up"}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			tmExpectAt(t, p, packet.PUBLISH, start, at) // a PINGREQ fails here
			p.send(&packet.Publish{Topic: []byte("down")})
		}
		tmExpectAt(t, p, packet.PINGREQ, start, at+10*time.Second)
		p.send(&packet.Pingresp{})
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
	})
}

// TestKeepAliveRounded: the keep alive goes in CONNECT in whole seconds,
// rounded up, and the rounded interval is the one the client uses; zero
// means 60 s.
func TestKeepAliveRounded(t *testing.T) {
	for _, tc := range []struct {
		ka   time.Duration
		want uint16 // seconds
	}{
		{1500 * time.Millisecond, 2},
		{1001 * time.Millisecond, 2},
		{time.Second, 1},
		{7 * time.Second, 7},
		{0, 60},
	} {
		t.Run(tc.ka.String(), func(t *testing.T) {
			tmBubble(t, func(t *testing.T) {
				c, p, connect := tmDial(t, &Options{ClientID: "ka-round", KeepAlive: tc.ka})
				start := time.Now()
				if connect.KeepAlive != tc.want {
					t.Errorf("CONNECT keep alive %d s, want %d s", connect.KeepAlive, tc.want)
				}
				interval := time.Duration(tc.want) * time.Second
				tmExpectAt(t, p, packet.PINGREQ, start, interval)
				p.send(&packet.Pingresp{})
				tmExpectAt(t, p, packet.PINGREQ, start, 2*interval)
				p.send(&packet.Pingresp{})
				if err := c.Err(); err != nil {
					t.Fatalf("connection ended: %v", err)
				}
			})
		})
	}
}

// TestKeepAliveOff: a negative keep alive is sent as 0 and the client
// never sends PINGREQ, nor times out, however long it is idle.
func TestKeepAliveOff(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		c, p, connect := tmDial(t, &Options{ClientID: "ka-off", KeepAlive: -time.Second})
		if connect.KeepAlive != 0 {
			t.Errorf("CONNECT keep alive %d s, want 0 (off)", connect.KeepAlive)
		}
		p.conn.SetReadDeadline(time.Now().Add(time.Hour))
		if pk, err := p.dec.Next(); err == nil {
			t.Fatalf("the client sent %v with keep alive off", pk.Type())
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("reading: %v, want an hour of silence", err)
		}
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
		// Still alive: a packet goes through.
		if err := c.Publish(context.Background(), Message{Topic: "still/here"}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		p.expect(packet.PUBLISH)
	})
}

// --- Ping timeout ---

// TestPingTimeoutExact: an unanswered PINGREQ ends the connection with
// ErrPingTimeout exactly PingTimeout after it was sent; a PINGRESP just
// before that keeps it up, and the next PINGREQ comes one keep alive after
// the first one.
func TestPingTimeoutExact(t *testing.T) {
	const ka, pt = 10 * time.Second, 3 * time.Second
	t.Run("unanswered", func(t *testing.T) {
		tmBubble(t, func(t *testing.T) {
			c, p, _ := dialPipe(t, &Options{ClientID: "pt", KeepAlive: ka, PingTimeout: pt}, nil)
			start := time.Now()
			tmExpectAt(t, p, packet.PINGREQ, start, ka)
			if err := tmDoneAt(t, c, start, ka+pt); !errors.Is(err, ErrPingTimeout) {
				t.Errorf("Err = %v, want ErrPingTimeout", err)
			}
			if st := c.State(); st != StateClosed {
				t.Errorf("State = %v, want %v", st, StateClosed)
			}
			p.expectEOF()
		})
	})
	t.Run("answered just in time", func(t *testing.T) {
		tmBubble(t, func(t *testing.T) {
			c, p, _ := dialPipe(t, &Options{ClientID: "pt", KeepAlive: ka, PingTimeout: pt}, nil)
			start := time.Now()
			tmExpectAt(t, p, packet.PINGREQ, start, ka)
			tmWaitUntil(start, ka+pt-time.Millisecond)
			p.send(&packet.Pingresp{})
			tmExpectAt(t, p, packet.PINGREQ, start, 2*ka)
			p.send(&packet.Pingresp{})
			if err := c.Err(); err != nil {
				t.Fatalf("connection ended: %v", err)
			}
		})
	})
}

// TestPingTimeoutDefault: PingTimeout zero means half the keep alive, at
// least 1 s and at most 30 s.
func TestPingTimeoutDefault(t *testing.T) {
	for _, tc := range []struct {
		ka, interval, pt time.Duration
	}{
		{time.Second, time.Second, time.Second},                  // 0.5 s raised to 1 s
		{1500 * time.Millisecond, 2 * time.Second, time.Second},  // 0.75 s raised to 1 s
		{4 * time.Second, 4 * time.Second, 2 * time.Second},      // half
		{10 * time.Second, 10 * time.Second, 5 * time.Second},    // half
		{0, time.Minute, 30 * time.Second},                       // the default keep alive
		{100 * time.Second, 100 * time.Second, 30 * time.Second}, // 50 s cut to 30 s
	} {
		t.Run(tc.ka.String(), func(t *testing.T) {
			tmBubble(t, func(t *testing.T) {
				c, p, _ := dialPipe(t, &Options{ClientID: "ptd", KeepAlive: tc.ka}, nil)
				start := time.Now()
				tmExpectAt(t, p, packet.PINGREQ, start, tc.interval)
				if err := tmDoneAt(t, c, start, tc.interval+tc.pt); !errors.Is(err, ErrPingTimeout) {
					t.Errorf("Err = %v, want ErrPingTimeout", err)
				}
			})
		})
	}
}

// --- Write deadline ---

// tmFillWriteBuffer publishes QoS 0 messages to a peer that reads nothing
// until Publish, within a context of one second, finds no room: the first
// write blocks, the write buffer fills, and the Publish after that fails.
// It returns that error; the bubble's clock has moved one second.
func tmFillWriteBuffer(t *testing.T, c *Client, writeBuffer int) error {
	t.Helper()
	payload := make([]byte, 100)
	size := (&packet.Publish{Topic: []byte("w"), Payload: payload}).Size()
	for n := 0; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Publish(ctx, Message{Topic: "w", Payload: payload})
		cancel()
		if err != nil {
			if n == 0 {
				t.Fatalf("first Publish: %v", err)
			}
			return err
		}
		// The one being written plus the buffer: the buffer is bounded.
		if n*size > 2*(writeBuffer+size) {
			t.Fatalf("%d QoS 0 messages (%d bytes) accepted by a client whose peer reads nothing, with a write buffer of %d bytes", n+1, (n+1)*size, writeBuffer)
		}
	}
}

// TestWriteDeadline: against a peer that stops reading after CONNACK, a
// QoS 0 Publish that finds the write buffer full fails within its context
// with ErrNotSent (it does not block for ever), and the connection ends
// with an error between KeepAlive + PingTimeout and 1.5 times that after
// the last write that went through (within a second: the deadline is kept
// in whole seconds), by the
// write deadline or the ping timeout, whichever comes first. After that,
// Publish fails with ErrNotSent and ErrClosed.
func TestWriteDeadline(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const ka, pt, wb = 10 * time.Second, 5 * time.Second, 256
		c, _, _ := dialPipe(t, &Options{ClientID: "wd", KeepAlive: ka, PingTimeout: pt, WriteBufferSize: wb}, nil)
		start := time.Now() // CONNECT was the last write that went through
		err := tmFillWriteBuffer(t, c, wb)
		if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish with a full write buffer: %v, want ErrNotSent and context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("Publish returned after %v, want 1s (its context)", d)
		}
		select {
		case <-c.Done():
		case <-time.After(time.Hour):
			t.Fatal("a peer that reads nothing was not noticed in an hour")
		}
		limit := ka + pt
		if d := time.Since(start); d < limit-time.Second || d > limit*3/2+time.Second {
			t.Errorf("connection ended %v after the last write went through, want between %v and %v (within a second)", d, limit, limit*3/2)
		}
		if err := c.Err(); err == nil || !strings.Contains(err.Error(), "write") && !errors.Is(err, ErrPingTimeout) {
			t.Errorf("Err = %v, want a write failure or ErrPingTimeout", err)
		}
		err = c.Publish(context.Background(), Message{Topic: "w"})
		if !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrClosed) {
			t.Errorf("Publish after the end: %v, want ErrNotSent and ErrClosed", err)
		}
	})
}

// TestWriteDeadlineWhileHeldBack: the write deadline alone ends a
// connection whose peer stops reading while the reader holds back (which
// suspends the ping timeout): the peer sends a PUBREL whose PUBCOMP finds
// the write buffer full. Without the write deadline the client would hang
// for ever. The deadline is kept in whole seconds: it may come up to a
// second off the range of KeepAlive + PingTimeout to 1.5 times that.
func TestWriteDeadlineWhileHeldBack(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const ka, pt, wb = 10 * time.Second, 5 * time.Second, 256
		c, p, _ := dialPipe(t, &Options{ClientID: "wdh", KeepAlive: ka, PingTimeout: pt, WriteBufferSize: wb}, nil)
		start := time.Now()
		if err := tmFillWriteBuffer(t, c, wb); !errors.Is(err, ErrNotSent) {
			t.Fatalf("Publish with a full write buffer: %v, want ErrNotSent", err)
		}
		p.send(&packet.Pubrel{PacketID: 1}) // its PUBCOMP waits for room: the reader holds back
		select {
		case <-c.Done():
		case <-time.After(time.Hour):
			t.Fatal("a write blocked for an hour did not end the connection")
		}
		limit := ka + pt
		if d := time.Since(start); d < limit-time.Second || d > limit*3/2+time.Second {
			t.Errorf("connection ended %v after the last write went through, want between %v and %v (within a second)", d, limit, limit*3/2)
		}
		if err := c.Err(); !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "write") {
			t.Errorf("Err = %v, want a write failing on its deadline", err)
		}
	})
}

// TestWriteDeadlineSlowReader: a peer that reads slowly, but takes each
// write within half of KeepAlive + PingTimeout, is not cut off: the
// deadline moves on with the writes. (One set once, at the first write,
// ends the connection.) The deadline is moved only once half of its margin
// is used, so a write is sure of half of KeepAlive + PingTimeout, not all
// of it: the peer takes a write every 7 s, under 7.5 s.
func TestWriteDeadlineSlowReader(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const ka, pt = 10 * time.Second, 5 * time.Second
		c, p, _ := dialPipe(t, &Options{ClientID: "wds", KeepAlive: ka, PingTimeout: pt}, nil)
		start := time.Now()
		// The peer takes one write every 7 s, whole.
		reads := make(chan time.Duration, 100)
		go func() {
			defer close(reads)
			buf := make([]byte, 64<<10)
			for {
				<-time.After(7 * time.Second)
				if _, err := p.conn.Read(buf); err != nil {
					return
				}
				reads <- time.Since(start)
			}
		}()
		// The client publishes every second; the peer sends something
		// every 5 s, so that nothing calls for a PINGREQ (which this peer
		// would not answer).
		for at := time.Second; at <= time.Minute; at += time.Second {
			tmWaitUntil(start, at)
			if err := c.Publish(context.Background(), Message{Topic: "up"}); err != nil {
				t.Fatalf("Publish at %v: %v", at, err)
			}
			if at%(5*time.Second) == 0 {
				p.send(&packet.Publish{Topic: []byte("down")})
			}
		}
		if err := c.Err(); err != nil {
			t.Fatalf("a peer taking every write within 7 s was cut off: %v", err)
		}
		c.Close()
		n := 0
		for range reads {
			n++
		}
		if n < 8 {
			t.Errorf("the peer took %d writes in a minute, want 8", n)
		}
	})
}

// --- Ping timeout while the reader holds back ---

// tmHeldBack connects a client with InboxSize 1 and a handler that blocks
// until release is called, and sends it three QoS 1 messages: the handler
// takes the first, the inbox the second, and the reader holds back with
// the third. It returns once the bubble is idle. release is called at the
// end of the test too.
func tmHeldBack(t *testing.T, ka, pt time.Duration) (c *Client, p *peer, start time.Time, release func(), handled <-chan byte) {
	t.Helper()
	gate := make(chan struct{})
	h := make(chan byte, 3)
	c, p, _ = dialPipe(t, &Options{ClientID: "held", KeepAlive: ka, PingTimeout: pt, InboxSize: 1,
		DefaultHandler: func(m Message) { <-gate; h <- m.Payload[0] }}, nil)
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the client is closed
	start = time.Now()
	// The write ends once read, or when the client closes.
	tmSendAsync(t, p,
		&packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("held"), Payload: []byte{1}},
		&packet.Publish{QoS: 1, PacketID: 2, Topic: []byte("held"), Payload: []byte{2}},
		&packet.Publish{QoS: 1, PacketID: 3, Topic: []byte("held"), Payload: []byte{3}})
	synctest.Wait()
	return c, p, start, release, h
}

// TestPingTimeoutSuspendedWhileHeldBack: while the reader holds back for a
// handler that blocks for several keep alive intervals, the PINGRESP
// cannot be read, and an unanswered PINGREQ must not end the connection.
// Once the handler is released and reading resumes, the wait for PINGRESP
// starts again: the connection ends with ErrPingTimeout exactly
// PingTimeout after the release if none comes, and stays up if one comes
// in time.
func TestPingTimeoutSuspendedWhileHeldBack(t *testing.T) {
	const ka, pt = 10 * time.Second, 5 * time.Second
	const hold = 6 * ka
	heldBack := func(t *testing.T) (*Client, *peer, time.Time, <-chan tmPacket) {
		c, p, start, release, handled := tmHeldBack(t, ka, pt)
		sent := tmPump(p, start)
		if tp := tmNext(t, sent); tp.typ != packet.PINGREQ || tp.at != ka {
			t.Fatalf("%v at %v, want PINGREQ at %v", tp.typ, tp.at, ka)
		}
		// Unanswered: the PINGRESP could not be read anyway.
		select {
		case <-c.Done():
			t.Fatalf("connection ended at %v while the reader held back: %v", time.Since(start), c.Err())
		case <-time.After(time.Until(start.Add(hold))):
		}
		release()
		// The three messages are handled and acknowledged at once.
		var acks []uint16
		for len(acks) < 3 {
			tp := tmNext(t, sent)
			switch {
			case tp.typ == packet.PINGREQ:
				// Allowed: keep alive goes on while holding back.
			case tp.typ != packet.PUBACK:
				t.Fatalf("%v at %v, want PUBACK", tp.typ, tp.at)
			case tp.at != hold:
				t.Errorf("PUBACK %d at %v, want at the release, %v", tp.id, tp.at, hold)
				fallthrough
			default:
				acks = append(acks, tp.id)
			}
		}
		if !slices.Equal(acks, []uint16{1, 2, 3}) {
			t.Errorf("PUBACKs %v, want 1, 2, 3", acks)
		}
		for i := byte(1); i <= 3; i++ {
			if got := <-handled; got != i {
				t.Errorf("handled message %d, want %d", got, i)
			}
		}
		return c, p, start, sent
	}
	t.Run("unanswered", func(t *testing.T) {
		tmBubble(t, func(t *testing.T) {
			c, _, start, _ := heldBack(t)
			if err := tmDoneAt(t, c, start, hold+pt); !errors.Is(err, ErrPingTimeout) {
				t.Errorf("Err = %v, want ErrPingTimeout", err)
			}
		})
	})
	t.Run("answered", func(t *testing.T) {
		tmBubble(t, func(t *testing.T) {
			c, p, start, sent := heldBack(t)
			tmWaitUntil(start, hold+pt-time.Second)
			p.send(&packet.Pingresp{})
			// The PUBACKs went at the release: the next PINGREQ is due one
			// keep alive later.
			for {
				tp := tmNext(t, sent)
				if tp.typ != packet.PINGREQ {
					t.Fatalf("%v at %v, want PINGREQ", tp.typ, tp.at)
				}
				if tp.at < hold+ka {
					continue // sent while holding back, or at the release
				}
				if tp.at != hold+ka {
					t.Errorf("PINGREQ at %v, want at %v", tp.at, hold+ka)
				}
				break
			}
			p.send(&packet.Pingresp{})
			if err := c.Err(); err != nil {
				t.Fatalf("connection ended: %v", err)
			}
		})
	})
}

// TestKeepAliveWhileHeldBack: while the reader holds back, the client
// still owes the server a packet every keep alive interval
// [MQTT-3.1.2-23] (the server closes a connection silent for one and a
// half of it [MQTT-3.1.2-24]), and Options.PingTimeout says "the wait is
// suspended", conn.holdBack "keep alive goes on sending PINGREQ": a
// PINGREQ comes every keep alive, though the first is unanswered.
func TestKeepAliveWhileHeldBack(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const ka, pt = 10 * time.Second, 5 * time.Second
		c, p, start, release, _ := tmHeldBack(t, ka, pt)
		sent := tmPump(p, start)
		for i := 1; i <= 4; i++ {
			select {
			case tp := <-sent:
				if tp.typ != packet.PINGREQ || tp.at != time.Duration(i)*ka {
					t.Fatalf("%v at %v, want PINGREQ at %v", tp.typ, tp.at, time.Duration(i)*ka)
				}
			case <-time.After(time.Until(start.Add(time.Duration(i)*ka + time.Second))):
				t.Fatalf("no PINGREQ at %v while the reader held back: the client sent nothing for over the keep alive of %v [MQTT-3.1.2-23]; a server closes the connection after %v of silence [MQTT-3.1.2-24]",
					time.Duration(i)*ka, ka, 3*ka/2)
			}
		}
		release()
		if err := c.Err(); err != nil {
			t.Fatalf("connection ended: %v", err)
		}
	})
}

// --- Session backoff ---

// tmAttempt takes the next connection attempt of a Session on b, checks
// that it is connecting, and answers CONNACK with code; on a refusal it
// closes the connection and checks the Session waits (or, with stops,
// that it ended). It returns when the attempt was answered, and the peer.
func tmAttempt(t *testing.T, b *pipeBroker, s *Session, code packet.ConnackCode, stops bool) (time.Time, *peer) {
	t.Helper()
	p := b.accept()
	p.expect(packet.CONNECT)
	if st := s.State(); st != StateConnecting {
		t.Errorf("State during an attempt = %v, want %v", st, StateConnecting)
	}
	p.send(&packet.Connack{ReturnCode: code})
	at := time.Now()
	synctest.Wait()
	want := StateWaiting
	switch {
	case code == packet.Accepted:
		want = StateConnected
	case stops:
		want = StateClosed
	}
	if st := s.State(); st != want {
		t.Errorf("State after CONNACK %d = %v, want %v", code, st, want)
	}
	if code != packet.Accepted {
		p.conn.Close()
	}
	return at, p
}

// tmSession starts a Session on a pipe broker, with keep alive off; it is
// closed, and its end waited for, at the end of the test.
func tmSession(t *testing.T, so SessionOptions) (*Session, *pipeBroker) {
	t.Helper()
	b := newPipeBroker(t)
	so.KeepAlive = -1
	s, err := NewSession(b, &so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); <-s.Done() })
	return s, b
}

// tmCheckWait checks a wait between attempts against the backoff d: within
// [d/2, d].
func tmCheckWait(t *testing.T, i int, w, d time.Duration) {
	t.Helper()
	if w < d/2 || w > d {
		t.Errorf("wait %d: %v, want within [%v, %v]", i, w, d/2, d)
	}
}

// TestSessionBackoff: refusals with CONNACK 3 (server unavailable) are
// retried after a wait drawn within [d/2, d], where d starts at MinBackoff
// and doubles up to MaxBackoff; the Session is waiting between attempts
// and connecting during one.
func TestSessionBackoff(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const minB, maxB = time.Second, 8 * time.Second
		created := time.Now()
		s, b := tmSession(t, SessionOptions{Options: Options{ClientID: "bo"}, MinBackoff: minB, MaxBackoff: maxB})
		last, _ := tmAttempt(t, b, s, packet.ServerUnavailable, false)
		if d := last.Sub(created); d != 0 {
			t.Errorf("first attempt after %v, want at once", d)
		}
		if err := s.LastError(); !errors.Is(err, ErrServerUnavailable) {
			t.Errorf("LastError = %v, want ErrServerUnavailable", err)
		}
		d := minB
		atTop, atBottom := 0, 0
		const n = 8
		for i := 1; i <= n; i++ {
			at, _ := tmAttempt(t, b, s, packet.ServerUnavailable, false)
			w := at.Sub(last)
			tmCheckWait(t, i, w, d)
			if w == d {
				atTop++
			}
			if w == d/2 {
				atBottom++
			}
			last = at
			d = min(2*d, maxB)
		}
		if atTop == n || atBottom == n {
			t.Errorf("all %d waits at the bound: no jitter", n)
		}
	})
}

// TestSessionBackoffStable: after a connection that lasted at least
// StableAfter, the wait starts again from MinBackoff; after a shorter one,
// the backoff goes on from where it was.
func TestSessionBackoffStable(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		const minB, maxB, stable = time.Second, 16 * time.Second, 30 * time.Second
		s, b := tmSession(t, SessionOptions{Options: Options{ClientID: "bos"}, MinBackoff: minB, MaxBackoff: maxB, StableAfter: stable})
		last, _ := tmAttempt(t, b, s, packet.ServerUnavailable, false)
		i := 0
		next := func(code packet.ConnackCode, d time.Duration) *peer {
			t.Helper()
			i++
			at, p := tmAttempt(t, b, s, code, false)
			tmCheckWait(t, i, at.Sub(last), d)
			last = at
			return p
		}
		for _, d := range []time.Duration{1, 2, 4} {
			next(packet.ServerUnavailable, d*time.Second)
		}
		// Up for just under StableAfter: the backoff goes on (16 s).
		p := next(packet.Accepted, 8*time.Second)
		tmWaitUntil(last, stable-time.Millisecond)
		p.conn.Close()
		synctest.Wait()
		if st := s.State(); st != StateWaiting {
			t.Errorf("State after a connection loss = %v, want %v", st, StateWaiting)
		}
		last = time.Now()
		// Up for exactly StableAfter: the wait starts again from MinBackoff.
		p = next(packet.Accepted, 16*time.Second)
		tmWaitUntil(last, stable)
		p.conn.Close()
		synctest.Wait()
		last = time.Now()
		next(packet.ServerUnavailable, minB)
		next(packet.ServerUnavailable, 2*minB)
	})
}

// TestSessionRetryRefusedWaits: with RetryRefused, a permanent refusal
// (CONNACK 4) waits exactly what RetryRefused returns, which is told the
// refusals since the last successful connection (1, 2, 3, ...; a CONNACK
// 3 in between, retried with the backoff, does not reset the count, a
// successful connection does); a negative duration stops the Session: Err
// wraps the *ConnackError, State is closed, Done is closed and it dials no
// more.
func TestSessionRetryRefusedWaits(t *testing.T) {
	tmBubble(t, func(t *testing.T) {
		var mu sync.Mutex
		var calls []int
		waits := map[int]time.Duration{1: 3 * time.Second, 2: 6 * time.Second, 3: 9 * time.Second}
		stop := false
		s, b := tmSession(t, SessionOptions{Options: Options{ClientID: "rr"}, MinBackoff: time.Second, MaxBackoff: time.Minute,
			RetryRefused: func(err *ConnackError, refusals int) time.Duration {
				mu.Lock()
				defer mu.Unlock()
				if err.Code != packet.BadUsernameOrPassword {
					t.Errorf("RetryRefused with code %d, want 4", err.Code)
				}
				calls = append(calls, refusals)
				if stop {
					return -time.Nanosecond
				}
				return waits[refusals]
			}})
		last, _ := tmAttempt(t, b, s, packet.BadUsernameOrPassword, false)
		step := func(code packet.ConnackCode, lo, hi time.Duration) *peer {
			t.Helper()
			at, p := tmAttempt(t, b, s, code, false)
			if w := at.Sub(last); w < lo || w > hi {
				if lo == hi {
					t.Errorf("wait before CONNACK %d: %v, want %v", code, w, lo)
				} else {
					t.Errorf("wait before CONNACK %d: %v, want within [%v, %v]", code, w, lo, hi)
				}
			}
			last = at
			return p
		}
		// Each step checks the wait that the previous answer caused.
		step(packet.BadUsernameOrPassword, 3*time.Second, 3*time.Second) // after refusal 1
		step(packet.ServerUnavailable, 6*time.Second, 6*time.Second)     // after refusal 2
		step(packet.BadUsernameOrPassword, time.Second/2, time.Second)   // after CONNACK 3: the backoff, from MinBackoff
		p := step(packet.Accepted, 9*time.Second, 9*time.Second)         // after refusal 3
		p.conn.Close()                                                   // the connection is lost at once
		synctest.Wait()
		last = time.Now()
		mu.Lock()
		stop = true
		mu.Unlock()
		at, _ := tmAttempt(t, b, s, packet.BadUsernameOrPassword, true) // refusal 1 again: stop
		if w := at.Sub(last); w < time.Second || w > 2*time.Second {
			t.Errorf("wait after the connection loss: %v, want within [1s, 2s] (the backoff doubled by the CONNACK 3)", w)
		}
		mu.Lock()
		if want := []int{1, 2, 3, 1}; !slices.Equal(calls, want) {
			t.Errorf("RetryRefused told refusals %v, want %v", calls, want)
		}
		mu.Unlock()
		select {
		case <-s.Done():
		default:
			t.Fatal("Done not closed after RetryRefused returned a negative duration")
		}
		var ce *ConnackError
		if err := s.Err(); !errors.As(err, &ce) || ce.Code != packet.BadUsernameOrPassword || !errors.Is(err, ErrBadUsernameOrPassword) {
			t.Errorf("Err = %v, want the *ConnackError of return code 4", err)
		}
		if st := s.State(); st != StateClosed {
			t.Errorf("State = %v, want %v", st, StateClosed)
		}
		<-time.After(time.Hour)
		if n := len(b.conns); n != 0 {
			t.Errorf("%d connection attempts after the Session stopped", n)
		}
	})
}
