package packet

import (
	"bytes"
	"testing"
)

// TestPlain compares the eight-bytes-at-a-time check with a byte loop, for
// every length up to 40 and a bad byte at every position.
func TestPlain(t *testing.T) {
	slow := func(s []byte, wild bool) bool {
		for _, c := range s {
			if c == 0 || c >= 0x80 || wild && (c == '+' || c == '#') {
				return false
			}
		}
		return true
	}
	for n := 0; n <= 40; n++ {
		base := bytes.Repeat([]byte{'a'}, n)
		for _, wild := range []bool{false, true} {
			if !plain(base, wild) {
				t.Fatalf("plain(%q) = false", base)
			}
			for i := 0; i < n; i++ {
				for _, c := range []byte{0, 1, '+', '#', '/', 0x7f, 0x80, 0xC3, 0xFF, '*', ',', '"', '$'} {
					s := bytes.Clone(base)
					s[i] = c
					if got, want := plain(s, wild), slow(s, wild); got != want {
						t.Fatalf("plain(%q, %v) = %v, want %v", s, wild, got, want)
					}
				}
			}
		}
	}
}
