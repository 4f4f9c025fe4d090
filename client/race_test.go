package client

import (
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// TestDisconnectRacesLoss: Disconnect called while the server resets the
// connection during a stream of QoS 1 messages and a slow handler, with
// random timing, always returns promptly, and the client's goroutines all
// exit (the leak check in TestMain). Field case BR-12.
func TestDisconnectRacesLoss(t *testing.T) {
	iterations := 300
	if testing.Short() {
		iterations = 30
	}
	f := newFakeBroker(t)
	for i := range iterations {
		errc := make(chan error, 1)
		var c *Client
		go func() {
			var err error
			c, err = Dial(context.Background(), f.dialer(), &Options{ClientID: "race", DefaultHandler: func(Message) {
				time.Sleep(time.Duration(1+rand.IntN(5)) * time.Millisecond)
			}})
			errc <- err
		}()
		p := f.accept()
		p.expect(packet.CONNECT)
		p.send(&packet.Connack{})
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		streamed := make(chan struct{})
		go func() {
			defer close(streamed)
			buf := []byte{}
			for id := uint16(1); ; id++ {
				select {
				case <-stop:
					return
				default:
				}
				pub := packet.Publish{QoS: 1, PacketID: id, Topic: []byte("load/x"), Payload: []byte("x")}
				buf, _ = pub.AppendTo(buf[:0])
				if _, err := p.conn.Write(buf); err != nil {
					return
				}
			}
		}()
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		reset := func() {
			p.conn.(*net.TCPConn).SetLinger(0)
			p.conn.Close()
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		if i%2 == 0 {
			go reset()
			c.Disconnect(ctx)
		} else {
			go c.Disconnect(ctx)
			reset()
			c.Disconnect(ctx)
		}
		cancel()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("iteration %d: client did not end", i)
		}
		if elapsed := time.Since(start); elapsed > time.Second+250*time.Millisecond {
			t.Errorf("iteration %d: Disconnect and exit took %v", i, elapsed)
		}
		close(stop)
		<-streamed
	}
}
