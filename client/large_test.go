package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/broker"
	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// choppyConn accepts at most 1000 bytes per Write and returns at most
// 4 KiB per Read, as slow links and small socket buffers do.
type choppyConn struct{ net.Conn }

func (c choppyConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		m, err := c.Conn.Write(p[:min(len(p), 1000)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

func (c choppyConn) Read(p []byte) (int, error) { return c.Conn.Read(p[:min(len(p), 4096)]) }

func choppy(d netx.Dialer) netx.Dialer {
	return netx.DialerFunc(func(ctx context.Context) (net.Conn, error) {
		c, err := d.Dial(ctx)
		if err != nil {
			return nil, err
		}
		return choppyConn{c}, nil
	})
}

// TestLargePayloads round-trips payloads at and around the Remaining Length
// and WebSocket length boundaries, up to 1 MiB, over TCP (mosquitto) and
// WebSocket (the in-process broker: mosquitto 2.0's WebSocket sender is
// too slow for megabytes), also through a connection that writes and reads
// in small pieces (field case BR-21).
func TestLargePayloads(t *testing.T) {
	if testing.Short() {
		t.Skip("megabyte payloads")
	}
	m := mosquitto.Start(t, mosquitto.Config{})
	b, err := broker.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536, 132096, 1 << 20}
	for name, d := range map[string]netx.Dialer{
		"tcp":        netx.TCP(m.TCPAddr),
		"ws":         netx.WebSocket(b.WebSocketURL(), nil),
		"tcp-choppy": choppy(netx.TCP(m.TCPAddr)),
		"ws-choppy":  choppy(netx.WebSocket(b.WebSocketURL(), nil)),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t, 60*time.Second)
			got := make(chan Message, 1)
			c, err := Dial(ctx, d, &Options{ClientID: "large-" + name, MaxPacketSize: 2 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Subscribe(ctx, Subscription{Filter: "large", QoS: 1, Handler: func(m Message) { got <- m }}); err != nil {
				t.Fatal(err)
			}
			for _, size := range sizes {
				payload := make([]byte, size)
				for i := range payload {
					payload[i] = byte(i * 7)
				}
				if err := c.Publish(ctx, Message{Topic: "large", Payload: payload, QoS: 1}); err != nil {
					t.Fatalf("%d bytes: %v", size, err)
				}
				select {
				case m := <-got:
					if !bytes.Equal(m.Payload, payload) {
						t.Fatalf("%d bytes: received %d bytes, not the same", size, len(m.Payload))
					}
				case <-ctx.Done():
					t.Fatalf("%d bytes: not received", size)
				}
			}
		})
	}
}

// TestPublishOverMaxPacketSize: a message larger than MaxPacketSize is
// refused before anything is written (BR-21 item 4, BR-04).
func TestPublishOverMaxPacketSize(t *testing.T) {
	c, p := dialFake(t, &Options{ClientID: "max", MaxPacketSize: 1000})
	ctx := ctxT(t, 5*time.Second)
	err := c.Publish(ctx, Message{Topic: "big", Payload: make([]byte, 1000), QoS: 1})
	if !errors.Is(err, packet.ErrPacketTooLarge) {
		t.Fatalf("Publish = %v, want packet.ErrPacketTooLarge", err)
	}
	if err := c.Publish(ctx, Message{Topic: "small", Payload: make([]byte, 990-2-5-2)}); err != nil {
		t.Fatal(err)
	}
	if pub := p.expect(packet.PUBLISH).(*packet.Publish); string(pub.Topic) != "small" {
		t.Errorf("sent %q", pub.Topic)
	}

}
