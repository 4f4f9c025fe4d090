package packet

import (
	"bytes"
	"unicode/utf8"
)

// This file holds every content rule the encoder and the decoder share.
// Each check returns a zero violation when the rule holds.

// checkUTF8 checks a UTF-8 encoded string field (spec 1.5.3): well-formed
// UTF-8 without surrogates [MQTT-1.5.3-1], no U+0000 [MQTT-1.5.3-2], and at
// most 65,535 bytes. U+FEFF is kept as an ordinary character [MQTT-1.5.3-3].
func checkUTF8(s []byte, what string) violation {
	if len(s) <= maxString && plain(s, false) {
		return violation{}
	}
	if len(s) > maxString {
		return violation{"1.5.3", what + " longer than 65535 bytes"}
	}
	// utf8.Valid rejects ill-formed sequences, overlong forms and encoded
	// surrogates, as the rule requires.
	if !utf8.Valid(s) {
		return violation{"MQTT-1.5.3-1", what + " is not well-formed UTF-8"}
	}
	if bytes.IndexByte(s, 0) >= 0 {
		return violation{"MQTT-1.5.3-2", what + " contains U+0000"}
	}
	return violation{}
}

// checkBinary checks a binary data field: at most 65,535 bytes (spec 1.5.3).
func checkBinary(s []byte, what string) violation {
	if len(s) > maxString {
		return violation{"1.5.3", what + " longer than 65535 bytes"}
	}
	return violation{}
}

// checkTopicName checks a topic name (spec 4.7): at least one character
// [MQTT-4.7.3-1], no wildcard characters [MQTT-3.3.2-2], a valid UTF-8
// string [MQTT-3.3.2-1]. "$" is allowed anywhere.
func checkTopicName(s []byte, what string) violation {
	if len(s) > 0 && len(s) <= maxString && plain(s, true) {
		return violation{}
	}
	if len(s) == 0 {
		return violation{"MQTT-4.7.3-1", what + " is empty"}
	}
	if bytes.IndexByte(s, '+') >= 0 || bytes.IndexByte(s, '#') >= 0 {
		return violation{"MQTT-3.3.2-2", what + " contains a wildcard"}
	}
	return checkUTF8(s, what)
}

// checkTopicFilter checks a topic filter (spec 4.7): at least one character
// [MQTT-4.7.3-1], "#" only alone or after "/" and last [MQTT-4.7.1-2], "+"
// filling a whole level [MQTT-4.7.1-3], a valid UTF-8 string [MQTT-3.8.3-1].
func checkTopicFilter(s []byte) violation {
	if len(s) > 0 && len(s) <= maxString && plain(s, true) {
		return violation{} // no wildcards: nothing more to check
	}
	if len(s) == 0 {
		return violation{"MQTT-4.7.3-1", "topic filter is empty"}
	}
	for i, c := range s {
		switch c {
		case '#':
			if i != len(s)-1 || (i > 0 && s[i-1] != '/') {
				return violation{"MQTT-4.7.1-2", "topic filter has \"#\" other than alone as its last level"}
			}
		case '+':
			if (i > 0 && s[i-1] != '/') || (i < len(s)-1 && s[i+1] != '/') {
				return violation{"MQTT-4.7.1-3", "topic filter has \"+\" not filling a whole level"}
			}
		}
	}
	return checkUTF8(s, "topic filter")
}

// checkQoS checks a QoS value: 0, 1 or 2.
func checkQoS(q byte, rule, what string) violation {
	if q > 2 {
		return violation{rule, what + " is 3 or more"}
	}
	return violation{}
}

// checkPacketID checks that a packet identifier is non-zero [MQTT-2.3.1-1].
func checkPacketID(id uint16) violation {
	if id == 0 {
		return violation{"MQTT-2.3.1-1", "packet identifier is 0"}
	}
	return violation{}
}

// ValidTopicName reports, as an *Error wrapping ErrInvalid, why s cannot be
// the topic name of a PUBLISH (spec 4.7.3, [MQTT-3.3.2-2], [MQTT-1.5.3-1],
// [MQTT-1.5.3-2]); it returns nil for a valid topic name.
func ValidTopicName(s string) error {
	if v := checkTopicName(bytesOf(s), "topic name"); v.broken() {
		return v.asError(PUBLISH, ErrInvalid)
	}
	return nil
}

// ValidTopicFilter reports, as an *Error wrapping ErrInvalid, why s cannot be
// a topic filter (spec 4.7.1, 4.7.3); it returns nil for a valid filter.
func ValidTopicFilter(s string) error {
	if v := checkTopicFilter(bytesOf(s)); v.broken() {
		return v.asError(SUBSCRIBE, ErrInvalid)
	}
	return nil
}
