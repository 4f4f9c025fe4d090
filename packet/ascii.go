package packet

import "encoding/binary"

// Fast paths for the common case of plain ASCII strings, eight bytes at a
// time. They only ever answer "certainly valid"; anything else goes to the
// precise checks in validate.go, which give the reason.

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain reports whether every byte of s is ASCII (below 0x80) and not
// U+0000, and, when wild is true, not "+" or "#" either.
func plain(s []byte, wild bool) bool {
	if len(s) < 8 {
		for _, c := range s {
			if c-1 >= 0x7f || wild && c|0x08 == '+' {
				return false
			}
		}
		return true
	}
	if wild {
		return plainTopicWords(s)
	}
	return plainWords(s)
}

// plainWords is plain without wildcards for len(s) >= 8. It tests eight
// bytes at a time, the last load overlapping the one before, and
// accumulates before testing once: a zero byte is found by the borrow it
// causes in v-ones, and with no zero byte a byte gets its top bit set by the
// subtraction only if it had it already, so the top bits of v|(v-ones) are
// all clear exactly when every byte is in 0x01..0x7F.
func plainWords(s []byte) bool {
	var acc uint64
	n := len(s)
	for i := 0; i+8 <= n; i += 8 {
		v := binary.LittleEndian.Uint64(s[i:])
		acc |= v | (v - ones)
	}
	v := binary.LittleEndian.Uint64(s[n-8:])
	acc |= v | (v - ones)
	return acc&highs == 0
}

// plainTopicWords is plain with wildcards for len(s) >= 8. For an ASCII
// byte x, x+0x7F carries into the top bit exactly when x is not zero, and
// no carry leaves the byte; "#" (0x23) and "+" (0x2B) differ only in bit 3,
// so both become zero after setting that bit and XORing with 0x2B. A byte
// with its top bit set is caught by the OR of the words themselves (its
// carry may spill into the next byte, but the word is bad regardless). The
// words are folded in twos, for the processor to work on both at once.
func plainTopicWords(s []byte) bool {
	const k = 0x7f * ones
	const set3, plus = 0x08 * ones, '+' * ones
	last := binary.LittleEndian.Uint64(s[len(s)-8:])
	top, good := last, (last+k)&(((last|set3)^plus)+k)
	for len(s) >= 16 {
		v := binary.LittleEndian.Uint64(s)
		u := binary.LittleEndian.Uint64(s[8:])
		top |= v | u
		good &= (v + k) & (((v | set3) ^ plus) + k) & (u + k) & (((u | set3) ^ plus) + k)
		s = s[16:]
	}
	if len(s) >= 8 {
		v := binary.LittleEndian.Uint64(s)
		top |= v
		good &= (v + k) & (((v | set3) ^ plus) + k)
	}
	return (top|^good)&highs == 0
}
