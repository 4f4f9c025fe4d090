package packet

import "unsafe"

// bytesOf returns the bytes of s without copying. The result must only be
// read, never written or retained past the call that uses it.
func bytesOf(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// subackCodes views b as return codes without copying; SubackCode has the
// size and alignment of byte.
func subackCodes(b []byte) []SubackCode {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*SubackCode)(unsafe.Pointer(&b[0])), len(b))
}
