package packet

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// stream is every golden packet back to back.
func stream() ([]byte, []Packet) {
	var b []byte
	var ps []Packet
	for _, tc := range golden {
		b = append(b, h(tc.wire)...)
		ps = append(ps, decoded(tc.p))
	}
	return b, ps
}

func readAll(t *testing.T, d *Decoder) []Packet {
	t.Helper()
	var out []Packet
	for {
		p, err := d.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d packets: %v", len(out), err)
		}
		out = append(out, clonePacket(t, p))
	}
}

// clonePacket copies p by re-encoding it, so that it survives the next Next.
func clonePacket(t *testing.T, p Packet) Packet {
	t.Helper()
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatalf("re-encode %v: %v", p.Type(), err)
	}
	q, _, err := Parse(b)
	if err != nil {
		t.Fatalf("re-parse %v: %v", p.Type(), err)
	}
	return q
}

// TestDecoderChunking: the same packets whatever the chunking: one byte per
// read, a few bytes per read, all at once (BR-10: several packets in one
// read, one packet over many reads).
func TestDecoderChunking(t *testing.T) {
	b, want := stream()
	readers := map[string]func() io.Reader{
		"all at once":  func() io.Reader { return bytes.NewReader(b) },
		"one byte":     func() io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half reads":   func() io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"data and EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
		"7-byte reads": func() io.Reader { return &chunkReader{b: b, n: 7} },
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			got := readAll(t, NewDecoder(r(), 0))
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("packets (-want +got):\n%s", diff)
			}
		})
	}
}

type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestDecoderBR10: SUBACK, two PUBLISHes and a PINGRESP in one read.
func TestDecoderBR10(t *testing.T) {
	in := h("90 03 00 01 00" +
		"30 18 00 08 78 6D 61 73 2F 72 65 64 30 2E 35 33 33 37 35 35 33 30 32 34 32 39" +
		"30 18 00 08 78 6D 61 73 2F 72 65 64 30 2E 35 33 33 37 35 35 33 30 32 34 32 39" +
		"D0 00")
	got := readAll(t, NewDecoder(bytes.NewReader(in), 0))
	pub := &Publish{Topic: []byte("xmas/red"), Payload: []byte("0.533755302429")}
	want := []Packet{&Suback{PacketID: 1, ReturnCodes: []SubackCode{0}}, pub, pub, &Pingresp{}}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("packets (-want +got):\n%s", diff)
	}
}

// TestDecoderEOF: io.EOF only at a packet boundary, io.ErrUnexpectedEOF
// inside a packet, including inside the Remaining Length (BR-01 input 4).
func TestDecoderEOF(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"30", io.ErrUnexpectedEOF},
		{"30 80", io.ErrUnexpectedEOF},
		{"30 07 00 03 61", io.ErrUnexpectedEOF},
		{"C0 00 30", io.ErrUnexpectedEOF},
	} {
		d := NewDecoder(bytes.NewReader(h(tc.in)), 0)
		var err error
		for err == nil {
			_, err = d.Next()
		}
		if err != tc.want {
			t.Errorf("%q: err = %v, want %v", tc.in, err, tc.want)
		}
		// Errors other than io.EOF are sticky.
		if _, err2 := d.Next(); tc.want != io.EOF && err2 != err {
			t.Errorf("%q: second Next = %v, want %v again", tc.in, err2, err)
		}
	}
}

// TestDecoderMaxHeader: a Remaining Length of 268,435,455 decodes to exactly
// that (BR-01 input 3), and is refused as too large before the body is read
// (BR-04).
func TestDecoderMaxHeader(t *testing.T) {
	_, _, remaining, n, err := parseHeader(h("30 FF FF FF 7F"))
	if err != nil || remaining != MaxRemainingLength || n != 5 {
		t.Fatalf("parseHeader = %d, %d, %v", remaining, n, err)
	}
	for _, wire := range []string{"30 FF FF FF 7F", "10 FF FF FF 7F", "30 81 80 40"} {
		r := &failAfter{b: h(wire)}
		d := NewDecoder(r, 0)
		_, err := d.Next()
		if !errors.Is(err, ErrPacketTooLarge) {
			t.Fatalf("%s: err = %v, want ErrPacketTooLarge", wire, err)
		}
		if r.extra {
			t.Errorf("%s: decoder read past the fixed header", wire)
		}
	}
}

// failAfter yields b and then records any further read.
type failAfter struct {
	b     []byte
	extra bool
}

func (r *failAfter) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		r.extra = true
		return 0, errors.New("read past the fixed header")
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestDecoderLimitExact: a packet of exactly the limit is accepted, one byte
// more is refused.
func TestDecoderLimitExact(t *testing.T) {
	p := &Publish{Topic: []byte("t"), Payload: make([]byte, 1000)}
	b, _ := p.AppendTo(nil)
	if _, err := NewDecoder(bytes.NewReader(b), len(b)).Next(); err != nil {
		t.Errorf("packet of exactly the limit: %v", err)
	}
	if _, err := NewDecoder(bytes.NewReader(b), len(b)-1).Next(); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("packet one byte over the limit: %v", err)
	}
}

// TestDecoderNoAllocationByClaim: a peer claiming a large packet within the
// limit but sending little makes the decoder allocate by what arrives, not
// by the claim (BR-04).
func TestDecoderNoAllocationByClaim(t *testing.T) {
	pr, pw := io.Pipe()
	d := NewDecoder(pr, 128<<20)
	go func() {
		pw.Write(h("30 FF FF FF 1F 00 01 61")) // claims ~64 MiB
		time.Sleep(50 * time.Millisecond)
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := d.Next()
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("allocated %d bytes for a packet of which 8 bytes arrived", grew)
	}
}

// TestDecoderTrickle: a legitimate 1 MiB PUBLISH trickled in small reads is
// accepted when the limit allows it (BR-04 item 4), and the buffer ends up
// within twice the packet size.
func TestDecoderTrickle(t *testing.T) {
	p := &Publish{QoS: 1, PacketID: 7, Topic: []byte("big"), Payload: bytes.Repeat([]byte("0123456789abcdef"), 1<<16)}
	b, _ := p.AppendTo(nil)
	d := NewDecoder(&chunkReader{b: b, n: 1024}, 2<<20)
	got, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.(*Publish).Payload, p.Payload) {
		t.Fatal("payload differs")
	}
	if cap(d.buf) > 2*len(b) {
		t.Errorf("buffer %d bytes for a %d-byte packet", cap(d.buf), len(b))
	}
}

// TestDecoderReadError: a reader error other than EOF is returned, after the
// packets read before it.
func TestDecoderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(h("C0 00 D0")), iotest.ErrReader(boom))
	d := NewDecoder(r, 0)
	if p, err := d.Next(); err != nil || p.Type() != PINGREQ {
		t.Fatalf("Next = %v, %v", p, err)
	}
	if _, err := d.Next(); err != boom {
		t.Fatalf("err = %v, want boom", err)
	}
}

func TestDecoderReset(t *testing.T) {
	d := NewDecoder(bytes.NewReader(h("00")), 0)
	if _, err := d.Next(); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
	d.Reset(bytes.NewReader(h("C0 00")))
	if p, err := d.Next(); err != nil || p.Type() != PINGREQ {
		t.Fatalf("after Reset: %v, %v", p, err)
	}
	if d.Buffered() != 0 {
		t.Fatalf("Buffered = %d", d.Buffered())
	}
}

// TestDecoderShrinks: a buffer grown for one large packet is let go once
// small packets follow, and kept while large ones do.
func TestDecoderShrinks(t *testing.T) {
	big := &Publish{Topic: []byte("big"), Payload: make([]byte, 1<<20)}
	b, _ := big.AppendTo(nil)
	b2, _ := big.AppendTo(nil)
	small := []byte{0xC0, 0x00}
	in := append(append(append(b, b2...), small...), small...)
	d := NewDecoder(bytes.NewReader(in), 2<<20)
	d.Next()
	grown := cap(d.buf)
	d.Next()
	if cap(d.buf) < grown {
		t.Errorf("buffer let go between two large packets")
	}
	d.Next()
	d.Next()
	if _, err := d.Next(); err != io.EOF { // the buffer is empty: the next read lets it go
		t.Fatal(err)
	}
	if cap(d.buf) > keepBuffer {
		t.Errorf("buffer of %d bytes kept for small packets", cap(d.buf))
	}
}
