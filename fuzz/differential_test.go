package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/devicemq/mqtt/packet"
	mochi "github.com/mochi-mqtt/server/v2/packets"
)

// mochiParse decodes the packet at the start of b with mochi's packets
// package at protocol level 4, as its server does: FixedHeader.Decode,
// DecodeLength, then the type's Decode on exactly Remaining Length bytes.
// ok is false when b ends inside the packet.
func mochiParse(b []byte) (pk mochi.Packet, n int, ok bool, err error) {
	if len(b) == 0 {
		return pk, 0, false, nil
	}
	var fh mochi.FixedHeader
	if err := fh.Decode(b[0]); err != nil {
		return pk, 0, true, err
	}
	rl, ln, err := mochi.DecodeLength(bytes.NewReader(b[1:]))
	if err != nil {
		// mochi reports a cut-short length as an error too.
		if len(b) < 5 {
			return pk, 0, false, nil
		}
		return pk, 0, true, err
	}
	fh.Remaining = rl
	if len(b) < 1+ln+rl {
		return pk, 0, false, nil
	}
	body := b[1+ln : 1+ln+rl]
	pk = mochi.Packet{FixedHeader: fh, ProtocolVersion: 4}
	switch fh.Type {
	case mochi.Connect:
		err = pk.ConnectDecode(body)
	case mochi.Connack:
		err = pk.ConnackDecode(body)
	case mochi.Publish:
		err = pk.PublishDecode(body)
	case mochi.Puback:
		err = pk.PubackDecode(body)
	case mochi.Pubrec:
		err = pk.PubrecDecode(body)
	case mochi.Pubrel:
		err = pk.PubrelDecode(body)
	case mochi.Pubcomp:
		err = pk.PubcompDecode(body)
	case mochi.Subscribe:
		err = pk.SubscribeDecode(body)
	case mochi.Suback:
		err = pk.SubackDecode(body)
	case mochi.Unsubscribe:
		err = pk.UnsubscribeDecode(body)
	case mochi.Unsuback:
		err = pk.UnsubackDecode(body)
	case mochi.Pingreq:
		err = pk.PingreqDecode(body)
	case mochi.Pingresp:
		err = pk.PingrespDecode(body)
	case mochi.Disconnect:
		err = pk.DisconnectDecode(body)
	default:
		err = fmt.Errorf("packet type %d", fh.Type)
	}
	return pk, 1 + ln + rl, true, err
}

// stricter lists the rules this codec enforces on decode and mochi's
// decoder does not (mochi leaves most content rules to separate Validate
// calls, or to none). TestStricterThanMochi holds one input per rule.
var stricter = map[string]bool{
	"2.2.3":         true, // a five-byte Remaining Length: mochi accepts some (E0 80 80 80 80 30 as a DISCONNECT)
	"3.1.3":         true, // bytes after the last CONNECT field
	"3.2.1":         true, // CONNACK Remaining Length not 2
	"3.2.2.1":       true, // CONNACK reserved acknowledge flags
	"3.2.2.3":       true, // CONNACK reserved return code
	"3.4.1":         true, // PUBACK Remaining Length not 2
	"3.5.1":         true,
	"3.6.1":         true,
	"3.7.1":         true,
	"3.11.1":        true,
	"3.12.1":        true, // PINGREQ Remaining Length not 0
	"3.13.1":        true,
	"3.14.1":        true,
	"3.1 3.1.3.1":   true,
	"MQTT-1.5.3-1":  true, // ill-formed UTF-8 where mochi reads bytes (user name, filters)
	"MQTT-1.5.3-2":  true,
	"MQTT-2.3.1-1":  true, // packet identifier 0
	"MQTT-3.1.2-1":  true, // protocol name
	"MQTT-3.1.2-2":  true, // protocol level
	"MQTT-3.1.2-3":  true, // reserved connect flag
	"MQTT-3.1.2-13": true, // will QoS without will flag
	"MQTT-3.1.2-14": true, // will QoS 3
	"MQTT-3.1.2-15": true, // will retain without will flag
	"MQTT-3.1.2-22": true, // password without user name
	"MQTT-3.1.3-7":  true, // empty client identifier without clean session
	"MQTT-3.2.2-4":  true, // session present on a refusal
	"MQTT-3.3.2-2":  true, // wildcards in a topic name
	"MQTT-3.8.3-3":  true, // SUBSCRIBE without filters
	"MQTT-3.9.3-1":  true, // SUBACK without return codes
	"MQTT-3.9.3-2":  true, // reserved SUBACK return code
	"MQTT-3.10.3-2": true, // UNSUBSCRIBE without filters
	"MQTT-4.7.1-2":  true, // "#" misplaced in a filter
	"MQTT-4.7.1-3":  true, // "+" not filling a level
	"MQTT-4.7.3-1":  true, // empty topic name or filter
}

// FuzzDifferentialMochi decodes every input with this codec and with
// mochi's. Where they disagree, this codec must be the stricter one, for a
// rule listed in stricter; where both accept, they must agree on every
// field.
func FuzzDifferentialMochi(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ours, n, err := packet.Parse(in)
		theirs, mn, complete, merr := mochiParse(in)
		if !complete {
			if err == nil {
				t.Fatalf("mochi needs more bytes, this codec decoded %v", ours.Type())
			}
			return
		}
		switch {
		case err != nil && merr != nil:
			return
		case err == nil && merr != nil:
			t.Fatalf("mochi rejects (%v), this codec accepts %#v", merr, ours)
		case err != nil:
			var e *packet.Error
			if errors.Is(err, packet.ErrMalformed) && errors.As(err, &e) && stricter[e.Rule] {
				return
			}
			t.Fatalf("this codec rejects (%v), mochi accepts %+v", err, theirs)
		}
		if n != mn {
			t.Fatalf("lengths differ: %d and %d", n, mn)
		}
		if d := compareMochi(ours, &theirs); d != "" {
			t.Fatalf("decoded packets differ: %s", d)
		}
	})
}

func compareMochi(p packet.Packet, m *mochi.Packet) string {
	if byte(p.Type()) != m.FixedHeader.Type {
		return fmt.Sprintf("type %v vs %d", p.Type(), m.FixedHeader.Type)
	}
	eq := func(what string, a, b any) string {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			return fmt.Sprintf("%s: %v vs %v", what, a, b)
		}
		return ""
	}
	first := func(ds ...string) string {
		for _, d := range ds {
			if d != "" {
				return d
			}
		}
		return ""
	}
	switch p := p.(type) {
	case *packet.Connect:
		c := m.Connect
		return first(
			eq("client id", string(p.ClientID), c.ClientIdentifier),
			eq("clean", p.CleanSession, c.Clean), eq("keep alive", p.KeepAlive, c.Keepalive),
			eq("will", p.WillFlag, c.WillFlag), eq("will qos", p.WillQoS, c.WillQos), eq("will retain", p.WillRetain, c.WillRetain),
			eq("will topic", string(p.WillTopic), c.WillTopic), eq("will message", string(p.WillMessage), string(c.WillPayload)),
			eq("user name", string(p.Username), string(c.Username)), eq("password", string(p.Password), string(c.Password)))
	case *packet.Connack:
		return first(eq("session present", p.SessionPresent, m.SessionPresent), eq("code", byte(p.ReturnCode), m.ReasonCode))
	case *packet.Publish:
		return first(eq("dup", p.DUP, m.FixedHeader.Dup), eq("qos", p.QoS, m.FixedHeader.Qos), eq("retain", p.Retain, m.FixedHeader.Retain),
			eq("topic", string(p.Topic), m.TopicName), eq("id", p.PacketID, m.PacketID), eq("payload", string(p.Payload), string(m.Payload)))
	case *packet.Puback:
		return eq("id", p.PacketID, m.PacketID)
	case *packet.Pubrec:
		return eq("id", p.PacketID, m.PacketID)
	case *packet.Pubrel:
		return eq("id", p.PacketID, m.PacketID)
	case *packet.Pubcomp:
		return eq("id", p.PacketID, m.PacketID)
	case *packet.Unsuback:
		return eq("id", p.PacketID, m.PacketID)
	case *packet.Subscribe:
		var a, b []string
		for _, s := range p.Subscriptions {
			a = append(a, fmt.Sprint(string(s.Filter), s.QoS))
		}
		for _, s := range m.Filters {
			b = append(b, fmt.Sprint(s.Filter, s.Qos))
		}
		return first(eq("id", p.PacketID, m.PacketID), eq("filters", a, b))
	case *packet.Suback:
		var a []byte
		for _, c := range p.ReturnCodes {
			a = append(a, byte(c))
		}
		return first(eq("id", p.PacketID, m.PacketID), eq("codes", a, m.ReasonCodes))
	case *packet.Unsubscribe:
		var a, b []string
		for _, f := range p.Filters {
			a = append(a, string(f))
		}
		for _, s := range m.Filters {
			b = append(b, s.Filter)
		}
		return first(eq("id", p.PacketID, m.PacketID), eq("filters", a, b))
	}
	return ""
}
