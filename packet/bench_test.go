package packet

import (
	"fmt"
	"testing"
)

// benchPublish is a QoS 1 PUBLISH with a 29-byte topic name.
func benchPublish(size int) *Publish {
	return &Publish{QoS: 1, PacketID: 42, Topic: []byte("devices/ABCDEFGHIJ/dev01/data"), Payload: make([]byte, size)}
}

func BenchmarkEncode(b *testing.B) {
	for _, tc := range golden {
		b.Run(tc.p.Type().String(), func(b *testing.B) {
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = tc.p.AppendTo(buf[:0])
			}
		})
	}
	for _, size := range []int{64, 1024, 16384} {
		b.Run(fmt.Sprintf("PUBLISH/%dB", size), func(b *testing.B) {
			p := benchPublish(size)
			buf := make([]byte, 0, p.Size())
			b.SetBytes(int64(p.Size()))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = p.AppendTo(buf[:0])
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, tc := range golden {
		b.Run(tc.p.Type().String(), func(b *testing.B) {
			wire := h(tc.wire)
			v := New(tc.p.Type())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Unmarshal(wire, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, size := range []int{64, 1024, 16384} {
		b.Run(fmt.Sprintf("PUBLISH/%dB", size), func(b *testing.B) {
			wire, _ := benchPublish(size).AppendTo(nil)
			var v Publish
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Unmarshal(wire, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
