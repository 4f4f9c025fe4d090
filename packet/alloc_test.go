package packet

import (
	"bytes"
	"testing"
)

// TestAllocs: encoding into a warm buffer and decoding into a warm value
// allocate nothing, for every packet type.
func TestAllocs(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, 0, 256)
			wire := h(tc.wire)
			if n := testing.AllocsPerRun(100, func() {
				buf, _ = tc.p.AppendTo(buf[:0])
			}); n != 0 {
				t.Errorf("AppendTo: %v allocs, want 0", n)
			}
			v := New(tc.p.Type())
			if _, err := Unmarshal(wire, v); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(100, func() {
				if _, err := Unmarshal(wire, v); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Unmarshal: %v allocs, want 0", n)
			}
		})
	}
}

// TestDecoderStreamAllocs: reading a stream of packets of every type through
// a Decoder allocates nothing once it is warm.
func TestDecoderStreamAllocs(t *testing.T) {
	b, _ := stream()
	pub := &Publish{QoS: 1, PacketID: 9, Topic: []byte("devices/ABCDEFGHIJ/dev1/events"), Payload: make([]byte, 1024)}
	for range 50 {
		b, _ = pub.AppendTo(b)
	}
	r := bytes.NewReader(b)
	d := NewDecoder(r, 0)
	drain := func() {
		r.Reset(b)
		d.Reset(r)
		for {
			if _, err := d.Next(); err != nil {
				return
			}
		}
	}
	drain()
	if n := testing.AllocsPerRun(20, drain); n != 0 {
		t.Errorf("Decoder: %v allocs per stream, want 0", n)
	}
}
