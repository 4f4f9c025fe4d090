// Package rawmqtt is a raw MQTT 3.1.1 and 5 byte codec and a client driven
// step by step, for tests that check a broker alone, without the project's
// own codec (packet) or client: tests build packets byte by byte with
// Encode, Connect, Subscribe, Publish and Puback, read them back with
// ReadPacket, and speak to a broker over TCP, TLS or WebSocket with a
// Client that reports failures to a testing.TB.
//
// It covers only what such tests need: CONNECT, SUBSCRIBE with one filter,
// PUBLISH and PUBACK, and it reads any packet as type, flags and body.
package rawmqtt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Packet types, the high four bits of a packet's first byte.
const (
	TypeConnect    = 1
	TypeConnack    = 2
	TypePublish    = 3
	TypePuback     = 4
	TypeSubscribe  = 8
	TypeSuback     = 9
	TypeDisconnect = 14
)

// AppendString appends s as an MQTT string: a two-byte big-endian length,
// then the bytes.
func AppendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Encode returns a packet: the first byte (type and flags), the remaining
// length as a variable byte integer, then body.
func Encode(first byte, body []byte) []byte {
	b := []byte{first}
	for n := len(body); ; {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// ConnectOpts are the fields of a CONNECT built by Connect.
type ConnectOpts struct {
	// Version is the protocol level: 3 for MQTT 3.1 (protocol name
	// "MQIsdp"), 4 for MQTT 3.1.1 (the default, if 0) or 5 for MQTT 5.
	Version  byte
	ClientID string
	Username string // sent if not empty
	Password []byte // sent if not nil
}

// Connect is a clean-session CONNECT with keep-alive 0 (no timeout), no
// will and, for MQTT 5, no properties.
func Connect(o ConnectOpts) []byte {
	var body []byte
	switch o.Version {
	case 3:
		body = AppendString(body, "MQIsdp")
		body = append(body, 3)
	case 0:
		body = AppendString(body, "MQTT")
		body = append(body, 4)
	default:
		body = AppendString(body, "MQTT")
		body = append(body, o.Version)
	}
	flags := byte(0x02) // clean session
	if o.Username != "" {
		flags |= 0x80
	}
	if o.Password != nil {
		flags |= 0x40
	}
	body = append(body, flags, 0, 0)
	if o.Version >= 5 {
		body = append(body, 0) // no properties
	}
	body = AppendString(body, o.ClientID)
	if o.Username != "" {
		body = AppendString(body, o.Username)
	}
	if o.Password != nil {
		body = AppendString(body, string(o.Password))
	}
	return Encode(TypeConnect<<4, body)
}

// Subscribe is a SUBSCRIBE with packet identifier id for one filter at
// the given maximum QoS, for protocol level version (with an empty property
// list for MQTT 5).
func Subscribe(version byte, id uint16, filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	if version >= 5 {
		body = append(body, 0) // no properties
	}
	body = AppendString(body, filter)
	return Encode(TypeSubscribe<<4|0x02, append(body, qos))
}

// Publish is an MQTT 3.1.1 PUBLISH; id is sent only if qos > 0.
func Publish(topic, payload string, qos byte, id uint16, retain bool) []byte {
	first := byte(TypePublish<<4) | qos<<1
	if retain {
		first |= 1
	}
	body := AppendString(nil, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	return Encode(first, append(body, payload...))
}

// Puback is an MQTT 3.1.1 PUBACK for packet identifier id.
func Puback(id uint16) []byte {
	return Encode(TypePuback<<4, binary.BigEndian.AppendUint16(nil, id))
}

// Packet is a packet as read: its type, the low four bits of its first
// byte, and the rest after the remaining length.
type Packet struct {
	Type  byte
	Flags byte
	Body  []byte
}

func (p Packet) String() string {
	return fmt.Sprintf("type %d flags %#x body % x", p.Type, p.Flags, p.Body)
}

// Message is a PUBLISH taken apart by Packet.Publish.
type Message struct {
	Topic   string
	Payload string
	QoS     byte
	ID      uint16 // 0 at QoS 0
}

// Publish takes apart an MQTT 3.1.1 PUBLISH (no properties).
func (p Packet) Publish() (Message, error) {
	if p.Type != TypePublish || len(p.Body) < 2 {
		return Message{}, fmt.Errorf("want PUBLISH, got %v", p)
	}
	n := int(binary.BigEndian.Uint16(p.Body))
	m := Message{QoS: p.Flags >> 1 & 3}
	rest := p.Body[2:]
	if n > len(rest) || m.QoS > 0 && len(rest) < n+2 {
		return Message{}, fmt.Errorf("PUBLISH too short: %v", p)
	}
	m.Topic, rest = string(rest[:n]), rest[n:]
	if m.QoS > 0 {
		m.ID = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	m.Payload = string(rest)
	return m, nil
}

// ReadPacket reads one packet from r.
func ReadPacket(r io.Reader) (Packet, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Packet{}, err
	}
	p := Packet{Type: b[0] >> 4, Flags: b[0] & 0x0f}
	n, mul := 0, 1
	for i := 0; ; i++ {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Packet{}, err
		}
		n += int(b[0]&0x7f) * mul
		mul *= 128
		if b[0]&0x80 == 0 {
			break
		}
		if i == 3 {
			return Packet{}, errors.New("bad remaining length")
		}
	}
	p.Body = make([]byte, n)
	_, err := io.ReadFull(r, p.Body)
	return p, err
}
