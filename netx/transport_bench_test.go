package netx_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/devicemq/mqtt/internal/testcerts"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
	"github.com/gobwas/ws"
)

// benchServer accepts one connection over transport (tcp, tls, ws or wss)
// and runs serve on the byte stream: raw for tcp and tls, the frames'
// payloads for ws and wss.
func benchServer(b *testing.B, pki *testcerts.PKI, transport string, serve func(r io.Reader, w io.Writer)) netx.Dialer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	secure := transport == "tls" || transport == "wss"
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if secure {
			c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{pki.ServerKeyPair}})
		}
		if transport == "ws" || transport == "wss" {
			u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == "mqtt" }}
			if _, err := u.Upgrade(c); err != nil {
				return
			}
			serve(&frameReader{r: c}, &frameWriter{w: c})
			return
		}
		serve(c, c)
	}()
	url := map[string]string{"tcp": "tcp://", "tls": "mqtts://", "ws": "ws://", "wss": "wss://"}[transport] + l.Addr().String()
	if transport == "ws" || transport == "wss" {
		url += "/mqtt"
	}
	d, err := netx.URL(url, &netx.Options{CAFile: pki.CAFile})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// frameReader yields the payloads of the client's frames (unmasked).
type frameReader struct {
	r    io.Reader
	left int64
	mask [4]byte
	pos  int64
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		h, err := ws.ReadHeader(f.r)
		if err != nil {
			return 0, err
		}
		f.left, f.mask, f.pos = h.Length, h.Mask, 0
	}
	n, err := f.r.Read(p[:min(int64(len(p)), f.left)])
	ws.Cipher(p[:n], f.mask, int(f.pos))
	f.left -= int64(n)
	f.pos += int64(n)
	return n, err
}

// frameWriter sends each Write as one binary frame.
type frameWriter struct{ w io.Writer }

func (f *frameWriter) Write(p []byte) (int, error) {
	if err := ws.WriteHeader(f.w, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p))}); err != nil {
		return 0, err
	}
	return f.w.Write(p)
}

// BenchmarkTransport measures a stream of QoS 1 PUBLISH packets with a
// 29-byte topic through each transport on loopback: op=write encodes and
// writes one packet per Write (the peer discards), op=read decodes packets
// that the peer streams, with packet.Decoder reading the connection.
func BenchmarkTransport(b *testing.B) {
	pki := testcerts.New(b)
	for _, size := range []int{64, 16 << 10} {
		p := &packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("devices/ABCDEFGHIJ/dev01/data"), Payload: bytes.Repeat([]byte{'x'}, size)}
		wire, _ := p.AppendTo(nil)
		for _, transport := range []string{"tcp", "tls", "ws", "wss"} {
			b.Run(fmt.Sprintf("op=write/size=%dB/transport=%s", size, transport), func(b *testing.B) {
				d := benchServer(b, pki, transport, func(r io.Reader, _ io.Writer) { io.Copy(io.Discard, r) })
				c, err := d.Dial(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, 0, len(wire))
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					buf, _ = p.AppendTo(buf[:0])
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		for _, transport := range []string{"tcp", "tls", "ws", "wss"} {
			b.Run(fmt.Sprintf("op=read/size=%dB/transport=%s", size, transport), func(b *testing.B) {
				// The peer writes 256 KiB of packets per Write, forever.
				chunk := bytes.Repeat(wire, max(1, (256<<10)/len(wire)))
				d := benchServer(b, pki, transport, func(_ io.Reader, w io.Writer) {
					for {
						if _, err := w.Write(chunk); err != nil {
							return
						}
					}
				})
				c, err := d.Dial(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				dec := packet.NewDecoder(c, 0)
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := dec.Next(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
