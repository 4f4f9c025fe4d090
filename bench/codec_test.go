package bench

import (
	"bytes"
	"testing"
)

// TestSameBytes checks the adapters: every implementation encodes each case
// to exactly this module's bytes and decodes those bytes without error, so
// the benchmarks compare like with like.
func TestSameBytes(t *testing.T) {
	for _, c := range cases {
		want, err := c.p.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range impls {
			if got := im.encoder(c.p)(); !bytes.Equal(got, want) {
				t.Errorf("%s %s: encodes\n% x\nwant\n% x", im.name, c.name, got, want)
			}
			if err := im.decoder(c.p, want)(); err != nil {
				t.Errorf("%s %s: decode: %v", im.name, c.name, err)
			}
		}
	}
}

// BenchmarkCodec encodes and decodes every case with every implementation.
// The copy implementation of the PUBLISH cases is a plain copy of the
// encoded bytes, the floor for encoding.
func BenchmarkCodec(b *testing.B) {
	for _, c := range cases {
		wire, _ := c.p.AppendTo(nil)
		for _, im := range impls {
			b.Run("op=encode/case="+c.name+"/impl="+im.name, func(b *testing.B) {
				enc := im.encoder(c.p)
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					enc()
				}
			})
		}
		if c.name[:4] == "PUBL" {
			b.Run("op=encode/case="+c.name+"/impl=copy", func(b *testing.B) {
				dst := make([]byte, len(wire))
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					copy(dst, wire)
				}
			})
		}
		for _, im := range impls {
			b.Run("op=decode/case="+c.name+"/impl="+im.name, func(b *testing.B) {
				dec := im.decoder(c.p, wire)
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					if err := dec(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
