package packet

// The two-byte packets with no variable header or payload: PINGREQ,
// PINGRESP (spec 3.12, 3.13) and DISCONNECT (spec 3.14).

// Pingreq is the PINGREQ packet, sent by the client to show it is alive and
// to check the server is (spec 3.12).
type Pingreq struct{}

// Pingresp is the PINGRESP packet, the server's answer to PINGREQ
// [MQTT-3.12.4-1] (spec 3.13).
type Pingresp struct{}

// Disconnect is the DISCONNECT packet, the client's last packet on a
// connection before it closes it [MQTT-3.14.4-1] (spec 3.14).
type Disconnect struct{}

// Type returns PINGREQ.
func (*Pingreq) Type() Type { return PINGREQ }

// Type returns PINGRESP.
func (*Pingresp) Type() Type { return PINGRESP }

// Type returns DISCONNECT.
func (*Disconnect) Type() Type { return DISCONNECT }

// Size returns 2, the length of every PINGREQ in bytes.
func (*Pingreq) Size() int { return 2 }

// Size returns 2, the length of every PINGRESP in bytes.
func (*Pingresp) Size() int { return 2 }

// Size returns 2, the length of every DISCONNECT in bytes.
func (*Disconnect) Size() int { return 2 }

// AppendTo appends C0 00 to dst. It never fails.
func (*Pingreq) AppendTo(dst []byte) ([]byte, error) { return append(dst, byte(PINGREQ)<<4, 0), nil }

// AppendTo appends D0 00 to dst. It never fails.
func (*Pingresp) AppendTo(dst []byte) ([]byte, error) {
	return append(dst, byte(PINGRESP)<<4, 0), nil
}

// AppendTo appends E0 00 to dst, reserved bits 0 [MQTT-3.14.1-1]. It never
// fails.
func (*Disconnect) AppendTo(dst []byte) ([]byte, error) {
	return append(dst, byte(DISCONNECT)<<4, 0), nil
}

func (*Pingreq) decode(_ byte, body []byte) error    { return decodeEmpty(PINGREQ, body) }
func (*Pingresp) decode(_ byte, body []byte) error   { return decodeEmpty(PINGRESP, body) }
func (*Disconnect) decode(_ byte, body []byte) error { return decodeEmpty(DISCONNECT, body) }

func decodeEmpty(t Type, body []byte) error {
	if len(body) != 0 {
		return malformed(t, headerSection[t], "remaining length is not 0")
	}
	return nil
}
