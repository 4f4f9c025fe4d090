package fuzz

import (
	"bytes"
	"errors"
	"io"
	"runtime/metrics"
	"testing"

	"github.com/devicemq/mqtt/packet"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var seeds = []string{
	"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1",
	"\x20\x02\x00\x00",
	"\x30\x07\x00\x03a/bhi",
	"\x3b\x09\x00\x03a/b\x00\x0ahi",
	"\x40\x02\x00\x01", "\x50\x02\x00\x02", "\x62\x02\x00\x03", "\x70\x02\x00\x04",
	"\x82\x0c\x00\x01\x00\x03a/+\x01\x00\x01#\x02",
	"\x90\x04\x00\x01\x01\x80",
	"\xa2\x0a\x00\x02\x00\x03a/+\x00\x01#",
	"\xb0\x02\x00\x02", "\xc0\x00", "\xd0\x00", "\xe0\x00",
	"\x30\x80\x80\x80\x80\x01", "\x36\x07\x00\x03a/b\x00\x01", "\xc0\x80\x00",
}

// FuzzParse: Parse never panics, and a packet that decodes re-encodes to a
// packet that decodes to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, n, err := packet.Parse(in)
		if err != nil {
			if !errors.Is(err, packet.ErrMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if n > len(in) {
			t.Fatalf("consumed %d of %d bytes", n, len(in))
		}
		out, err := p.AppendTo(nil)
		if err != nil {
			t.Fatalf("decoded %#v does not re-encode: %v", p, err)
		}
		if len(out) != p.Size() {
			t.Fatalf("Size %d, encoded %d", p.Size(), len(out))
		}
		q, m, err := packet.Parse(out)
		if err != nil || m != len(out) {
			t.Fatalf("re-encoded packet does not decode: %v", err)
		}
		if diff := cmp.Diff(p, q, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecoder: the streaming decoder gives the same packets as Parse,
// whatever the input and however it is split into reads, and allocates in
// proportion to the bytes it received, never to a length the input claims:
// its limit is the protocol's maximum, so a decoder that trusted a claimed
// Remaining Length would allocate up to 256 MiB here.
func FuzzDecoder(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s+s), uint8(3))
	}
	f.Add([]byte("\x30\xff\xff\xff\x7f\x00\x01a"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var want [][]byte
		rest := in
		for len(rest) > 0 {
			_, n, err := packet.Parse(rest)
			if err != nil {
				break
			}
			want = append(want, rest[:n])
			rest = rest[n:]
		}
		got, used := decodeAll(in, int(chunk)%16+1)
		if bound := 1<<20 + 32*uint64(len(in)); used > bound {
			// The count is process-wide: measure again before blaming
			// the decoder for the fuzzing engine's own allocations.
			if _, used = decodeAll(in, int(chunk)%16+1); used > bound {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(in), used)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("decoder found %d packets, Parse %d", len(got), len(want))
		}
		for i := range got {
			w, _, _ := packet.Parse(want[i])
			wb, _ := w.AppendTo(nil)
			if !bytes.Equal(got[i], wb) {
				t.Fatalf("packet %d differs", i)
			}
		}
	})
}

// decodeAll reads every packet from in, chunk bytes per read, and returns
// them re-encoded and the bytes the decoder allocated meanwhile.
func decodeAll(in []byte, chunk int) ([][]byte, uint64) {
	var out [][]byte
	before := heapAllocs()
	d := packet.NewDecoder(&chunker{b: in, n: chunk}, packet.MaxPacketSize)
	for {
		p, err := d.Next()
		if err != nil {
			return out, heapAllocs() - before
		}
		after := heapAllocs()
		b, _ := p.AppendTo(nil)
		out = append(out, b)
		before += heapAllocs() - after // do not count the copies made here
	}
}

type chunker struct {
	b []byte
	n int
}

func (c *chunker) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

// heapAllocs returns the bytes allocated on the heap so far.
func heapAllocs() uint64 {
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}
