package fuzz

import (
	"bytes"
	"errors"
	"testing"

	"github.com/devicemq/mqtt/packet"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// build makes a packet of type typ (mod 14, plus 1) from fuzzed fields.
func build(typ, flags byte, id uint16, a, b, c []byte) packet.Packet {
	split := func(s []byte) [][]byte {
		if len(s) == 0 {
			return nil
		}
		return bytes.Split(s, []byte{','})
	}
	switch packet.Type(typ%14 + 1) {
	case packet.CONNECT:
		p := &packet.Connect{
			CleanSession: flags&0x02 != 0, KeepAlive: id, ClientID: a,
			WillFlag: flags&0x04 != 0, WillQoS: flags >> 3 & 3, WillRetain: flags&0x20 != 0,
			UsernameFlag: flags&0x80 != 0, PasswordFlag: flags&0x40 != 0,
		}
		if flags&0x01 != 0 {
			p.ProtocolLevel = packet.Level31
		}
		if p.WillFlag {
			p.WillTopic, p.WillMessage = b, c
		}
		if p.UsernameFlag {
			p.Username = c
		}
		if p.PasswordFlag {
			p.Password = b
		}
		return p
	case packet.CONNACK:
		return &packet.Connack{SessionPresent: flags&1 != 0, ReturnCode: packet.ConnackCode(id)}
	case packet.PUBLISH:
		return &packet.Publish{DUP: flags&8 != 0, QoS: flags >> 1 & 3, Retain: flags&1 != 0, Topic: a, PacketID: id, Payload: b}
	case packet.PUBACK:
		return &packet.Puback{PacketID: id}
	case packet.PUBREC:
		return &packet.Pubrec{PacketID: id}
	case packet.PUBREL:
		return &packet.Pubrel{PacketID: id}
	case packet.PUBCOMP:
		return &packet.Pubcomp{PacketID: id}
	case packet.SUBSCRIBE:
		p := &packet.Subscribe{PacketID: id}
		for i, f := range split(a) {
			p.Subscriptions = append(p.Subscriptions, packet.Subscription{Filter: f, QoS: (flags >> (i % 4 * 2)) & 3})
		}
		return p
	case packet.SUBACK:
		p := &packet.Suback{PacketID: id}
		for _, x := range b {
			p.ReturnCodes = append(p.ReturnCodes, packet.SubackCode(x))
		}
		return p
	case packet.UNSUBSCRIBE:
		return &packet.Unsubscribe{PacketID: id, Filters: split(a)}
	case packet.UNSUBACK:
		return &packet.Unsuback{PacketID: id}
	case packet.PINGREQ:
		return &packet.Pingreq{}
	case packet.PINGRESP:
		return &packet.Pingresp{}
	default:
		return &packet.Disconnect{}
	}
}

// FuzzEncode: AppendTo either refuses a value, with ErrInvalid or
// ErrPacketTooLarge and dst unchanged, or produces bytes that decode to the
// same value, of the length Size predicts.
func FuzzEncode(f *testing.F) {
	f.Add(byte(2), byte(0x02), uint16(60), []byte("c1"), []byte(""), []byte(""))
	f.Add(byte(2), byte(0xEE), uint16(60), []byte("c1"), []byte("s/status"), []byte("bye"))
	f.Add(byte(2), byte(0x01), uint16(0), []byte("123456789012345678901234"), []byte(""), []byte(""))
	f.Add(byte(2), byte(0x06), uint16(1), []byte("id"), []byte("a/+"), []byte("x"))
	f.Add(byte(3), byte(0x01), uint16(6), []byte(""), []byte(""), []byte(""))
	f.Add(byte(4), byte(0x0B), uint16(10), []byte("a/b"), []byte("hi"), []byte(""))
	f.Add(byte(4), byte(0x06), uint16(10), []byte("a/b"), []byte("hi"), []byte(""))
	f.Add(byte(4), byte(0x00), uint16(0), []byte("\xef\xbb\xbfa"), []byte(""), []byte(""))
	f.Add(byte(5), byte(0), uint16(0), []byte(""), []byte(""), []byte(""))
	f.Add(byte(9), byte(0x39), uint16(1), []byte("a/+,#,sport/tennis#,+/x"), []byte(""), []byte(""))
	f.Add(byte(10), byte(0), uint16(1), []byte(""), []byte("\x00\x01\x02\x80\x03"), []byte(""))
	f.Add(byte(11), byte(0), uint16(2), []byte("a/+,#"), []byte(""), []byte(""))
	f.Add(byte(14), byte(0), uint16(0), []byte(""), []byte(""), []byte(""))
	f.Fuzz(func(t *testing.T, typ, flags byte, id uint16, a, b, c []byte) {
		p := build(typ, flags, id, a, b, c)
		prefix := []byte("prefix")
		out, err := p.AppendTo(prefix)
		if err != nil {
			if !errors.Is(err, packet.ErrInvalid) && !errors.Is(err, packet.ErrPacketTooLarge) {
				t.Fatalf("%v: error of no known kind: %v", p.Type(), err)
			}
			if !bytes.Equal(out, []byte("prefix")) {
				t.Fatalf("%v: dst changed on error", p.Type())
			}
			return
		}
		if !bytes.Equal(out[:6], []byte("prefix")) {
			t.Fatalf("%v: bytes before dst's length changed", p.Type())
		}
		wire := out[6:]
		if len(wire) != p.Size() {
			t.Fatalf("%v: Size %d, encoded %d", p.Type(), p.Size(), len(wire))
		}
		q, n, err := packet.Parse(wire)
		if err != nil {
			t.Fatalf("%v encoded to bytes the decoder rejects: %v\n% x", p.Type(), err, wire)
		}
		if n != len(wire) {
			t.Fatalf("%v: decoder took %d of %d bytes", p.Type(), n, len(wire))
		}
		if c, ok := p.(*packet.Connect); ok && c.ProtocolLevel == 0 {
			c.ProtocolLevel = packet.Level311
		}
		if diff := cmp.Diff(p, q, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-encoded +decoded):\n%s", diff)
		}
	})
}
