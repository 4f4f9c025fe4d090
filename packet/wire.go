package packet

import "encoding/binary"

// appendVarint appends v in the Remaining Length encoding of spec 2.2.3:
// seven bits per byte, least significant group first, the top bit set on
// every byte but the last. v must be at most MaxRemainingLength, which takes
// at most four bytes. The encoding is always minimal.
func appendVarint(b []byte, v int) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// putVarint writes v as appendVarint does into b, which has room, and
// returns the number of bytes written.
func putVarint(b []byte, v int) int {
	i := 0
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// sizeVarint returns the number of bytes appendVarint uses for v: 1 to 4.
func sizeVarint(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	default:
		return 4
	}
}

// consumeVarint decodes a Remaining Length from the start of b. It returns
// the value and the number of bytes it took (1 to 4); n == 0 means b ends
// before the field does, and n < 0 that the field runs past four bytes,
// which is malformed (spec 2.2.3). Non-minimal encodings are accepted.
func consumeVarint(b []byte) (v int, n int) {
	for i := 0; i < 4; i++ {
		if i == len(b) {
			return 0, 0
		}
		c := b[i]
		v |= int(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

// appendHeader appends a fixed header: first byte, then the Remaining Length.
func appendHeader(b []byte, first byte, remaining int) []byte {
	return appendVarint(append(b, first), remaining)
}

// headerSize is the size of a fixed header for a Remaining Length.
func headerSize(remaining int) int { return 1 + sizeVarint(remaining) }

// appendString appends a UTF-8 string or binary data field: a 2-byte
// big-endian length, then the bytes (spec 1.5.3). len(s) must be at most
// 65,535; callers check it first.
func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// reader walks the body of a received packet. Its methods never read past
// the end of the body; after the first short read every later call fails
// too, so a decoder can check ok once at a convenient point.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) byte() byte {
	if !r.ok || len(r.b) < 1 {
		r.ok = false
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uint16() uint16 {
	if !r.ok || len(r.b) < 2 {
		r.ok = false
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

// field reads a length-prefixed string or binary field and returns it
// aliasing the body.
func (r *reader) field() []byte {
	n := int(r.uint16())
	if !r.ok || len(r.b) < n {
		r.ok = false
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}
