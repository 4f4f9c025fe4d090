package netx

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"
)

var benchSizes = []int{64, 16 << 10}

// benchConn dials a loopback server over transport "ws" or "tcp". After the
// handshake the server runs serve on its raw socket.
func benchConn(b *testing.B, transport string, serve func(c net.Conn)) net.Conn {
	b.Helper()
	s := newTestServer(b, func(c net.Conn) {
		if transport == "ws" && upgradeMQTT(c, Subprotocol) != nil {
			return
		}
		serve(c)
	})
	var d Dialer
	switch transport {
	case "ws":
		d = WebSocket(s.url("/mqtt"), nil)
	default:
		d = TCP(s.addr())
	}
	c, err := d.Dial(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func BenchmarkWrite(b *testing.B) {
	for _, transport := range []string{"ws", "tcp"} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", transport, size), func(b *testing.B) {
				c := benchConn(b, transport, func(c net.Conn) {
					_, _ = io.Copy(io.Discard, c)
				})
				p := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					_, err := c.Write(p)
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkRead(b *testing.B) {
	for _, transport := range []string{"ws", "tcp"} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", transport, size), func(b *testing.B) {
				// The server sends size-byte frames (or raw bytes) non-stop.
				payload := bytes.Repeat([]byte{0xA5}, size)
				var unit []byte
				if transport == "ws" {
					var buf bytes.Buffer
					err := ws.WriteFrame(&buf, ws.NewBinaryFrame(payload))
					if err != nil {
						b.Fatal(err)
					}
					unit = buf.Bytes()
				} else {
					unit = payload
				}
				stream := bytes.Repeat(unit, max(1, (256<<10)/len(unit)))
				c := benchConn(b, transport, func(c net.Conn) {
					for {
						_, err := c.Write(stream)
						if err != nil {
							return
						}
					}
				})
				p := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					_, err := io.ReadFull(c, p)
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
