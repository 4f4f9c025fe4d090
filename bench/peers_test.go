package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	gomqttpkt "github.com/256dpi/gomqtt/packet"
	"github.com/devicemq/mqtt/packet"
	pahopkt "github.com/eclipse/paho.mqtt.golang/packets"
	mochipkt "github.com/mochi-mqtt/server/v2/packets"
	natiupkt "github.com/soypat/natiu-mqtt"
)

// paho is github.com/eclipse/paho.mqtt.golang/packets: Write to a reused
// bytes.Buffer, ReadPacket from a reused bytes.Reader.
var paho = impl{
	name: "paho",
	encoder: func(p packet.Packet) func() []byte {
		cp := pahoPacket(p)
		var buf bytes.Buffer
		return func() []byte {
			buf.Reset()
			if err := cp.Write(&buf); err != nil {
				panic(err)
			}
			return buf.Bytes()
		}
	},
	decoder: func(_ packet.Packet, wire []byte) func() error {
		r := bytes.NewReader(wire)
		return func() error {
			r.Reset(wire)
			_, err := pahopkt.ReadPacket(r)
			return err
		}
	},
}

func pahoPacket(p packet.Packet) pahopkt.ControlPacket {
	cp := pahopkt.NewControlPacket(byte(p.Type()))
	switch p := p.(type) {
	case *packet.Connect:
		c := cp.(*pahopkt.ConnectPacket)
		c.ProtocolName, c.ProtocolVersion = "MQTT", 4
		c.CleanSession, c.Keepalive, c.ClientIdentifier = p.CleanSession, p.KeepAlive, string(p.ClientID)
		c.UsernameFlag, c.Username = p.UsernameFlag, string(p.Username)
		c.PasswordFlag, c.Password = p.PasswordFlag, p.Password
	case *packet.Connack:
		c := cp.(*pahopkt.ConnackPacket)
		c.SessionPresent, c.ReturnCode = p.SessionPresent, byte(p.ReturnCode)
	case *packet.Publish:
		c := cp.(*pahopkt.PublishPacket)
		c.Qos, c.Dup, c.Retain = p.QoS, p.DUP, p.Retain
		c.TopicName, c.MessageID, c.Payload = string(p.Topic), p.PacketID, p.Payload
	case *packet.Puback:
		cp.(*pahopkt.PubackPacket).MessageID = p.PacketID
	case *packet.Pubrec:
		cp.(*pahopkt.PubrecPacket).MessageID = p.PacketID
	case *packet.Pubrel:
		cp.(*pahopkt.PubrelPacket).MessageID = p.PacketID
	case *packet.Pubcomp:
		cp.(*pahopkt.PubcompPacket).MessageID = p.PacketID
	case *packet.Subscribe:
		c := cp.(*pahopkt.SubscribePacket)
		c.MessageID = p.PacketID
		for _, s := range p.Subscriptions {
			c.Topics = append(c.Topics, string(s.Filter))
			c.Qoss = append(c.Qoss, s.QoS)
		}
	case *packet.Suback:
		c := cp.(*pahopkt.SubackPacket)
		c.MessageID = p.PacketID
		for _, code := range p.ReturnCodes {
			c.ReturnCodes = append(c.ReturnCodes, byte(code))
		}
	case *packet.Unsubscribe:
		c := cp.(*pahopkt.UnsubscribePacket)
		c.MessageID = p.PacketID
		for _, f := range p.Filters {
			c.Topics = append(c.Topics, string(f))
		}
	case *packet.Unsuback:
		cp.(*pahopkt.UnsubackPacket).MessageID = p.PacketID
	}
	return cp
}

// mochi is github.com/mochi-mqtt/server/v2/packets as its server uses it:
// FixedHeader.Decode and DecodeLength for the fixed header, then the packet
// type's Decode on the body; the type's Encode into a reused bytes.Buffer.
var mochi = impl{
	name: "mochi",
	encoder: func(p packet.Packet) func() []byte {
		pk := mochiPacket(p)
		enc := mochiEncoder(p.Type())
		var buf bytes.Buffer
		return func() []byte {
			buf.Reset()
			if err := enc(&pk, &buf); err != nil {
				panic(err)
			}
			return buf.Bytes()
		}
	},
	decoder: func(p packet.Packet, wire []byte) func() error {
		t := p.Type()
		var r bytes.Reader
		return func() error {
			var fh mochipkt.FixedHeader
			if err := fh.Decode(wire[0]); err != nil {
				return err
			}
			r.Reset(wire[1:])
			rl, n, err := mochipkt.DecodeLength(&r)
			if err != nil {
				return err
			}
			fh.Remaining = rl
			// A Packet per decode, as mochi's server makes one per read;
			// static calls keep it on the stack.
			pk := mochipkt.Packet{FixedHeader: fh, ProtocolVersion: 4}
			return mochiDecode(t, &pk, wire[1+n:])
		}
	},
}

func mochiPacket(p packet.Packet) mochipkt.Packet {
	pk := mochipkt.Packet{ProtocolVersion: 4, FixedHeader: mochipkt.FixedHeader{Type: byte(p.Type())}}
	switch p := p.(type) {
	case *packet.Connect:
		pk.Connect = mochipkt.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: p.CleanSession, Keepalive: p.KeepAlive,
			ClientIdentifier: string(p.ClientID), UsernameFlag: p.UsernameFlag, Username: p.Username,
			PasswordFlag: p.PasswordFlag, Password: p.Password,
		}
	case *packet.Connack:
		pk.SessionPresent, pk.ReasonCode = p.SessionPresent, byte(p.ReturnCode)
	case *packet.Publish:
		pk.FixedHeader.Qos, pk.FixedHeader.Dup, pk.FixedHeader.Retain = p.QoS, p.DUP, p.Retain
		pk.TopicName, pk.PacketID, pk.Payload = string(p.Topic), p.PacketID, p.Payload
	case *packet.Puback:
		pk.PacketID = p.PacketID
	case *packet.Pubrec:
		pk.PacketID = p.PacketID
	case *packet.Pubrel:
		pk.PacketID, pk.FixedHeader.Qos = p.PacketID, 1
	case *packet.Pubcomp:
		pk.PacketID = p.PacketID
	case *packet.Subscribe:
		pk.PacketID, pk.FixedHeader.Qos = p.PacketID, 1
		for _, s := range p.Subscriptions {
			pk.Filters = append(pk.Filters, mochipkt.Subscription{Filter: string(s.Filter), Qos: s.QoS})
		}
	case *packet.Suback:
		pk.PacketID = p.PacketID
		for _, c := range p.ReturnCodes {
			pk.ReasonCodes = append(pk.ReasonCodes, byte(c))
		}
	case *packet.Unsubscribe:
		pk.PacketID, pk.FixedHeader.Qos = p.PacketID, 1
		for _, f := range p.Filters {
			pk.Filters = append(pk.Filters, mochipkt.Subscription{Filter: string(f)})
		}
	case *packet.Unsuback:
		pk.PacketID = p.PacketID
	}
	return pk
}

func mochiEncoder(t packet.Type) func(*mochipkt.Packet, *bytes.Buffer) error {
	return map[packet.Type]func(*mochipkt.Packet, *bytes.Buffer) error{
		packet.CONNECT: (*mochipkt.Packet).ConnectEncode, packet.CONNACK: (*mochipkt.Packet).ConnackEncode,
		packet.PUBLISH: (*mochipkt.Packet).PublishEncode, packet.PUBACK: (*mochipkt.Packet).PubackEncode,
		packet.PUBREC: (*mochipkt.Packet).PubrecEncode, packet.PUBREL: (*mochipkt.Packet).PubrelEncode,
		packet.PUBCOMP: (*mochipkt.Packet).PubcompEncode, packet.SUBSCRIBE: (*mochipkt.Packet).SubscribeEncode,
		packet.SUBACK: (*mochipkt.Packet).SubackEncode, packet.UNSUBSCRIBE: (*mochipkt.Packet).UnsubscribeEncode,
		packet.UNSUBACK: (*mochipkt.Packet).UnsubackEncode, packet.PINGREQ: (*mochipkt.Packet).PingreqEncode,
		packet.PINGRESP: (*mochipkt.Packet).PingrespEncode, packet.DISCONNECT: (*mochipkt.Packet).DisconnectEncode,
	}[t]
}

func mochiDecode(t packet.Type, pk *mochipkt.Packet, body []byte) error {
	switch t {
	case packet.CONNECT:
		return pk.ConnectDecode(body)
	case packet.CONNACK:
		return pk.ConnackDecode(body)
	case packet.PUBLISH:
		return pk.PublishDecode(body)
	case packet.PUBACK:
		return pk.PubackDecode(body)
	case packet.PUBREC:
		return pk.PubrecDecode(body)
	case packet.PUBREL:
		return pk.PubrelDecode(body)
	case packet.PUBCOMP:
		return pk.PubcompDecode(body)
	case packet.SUBSCRIBE:
		return pk.SubscribeDecode(body)
	case packet.SUBACK:
		return pk.SubackDecode(body)
	case packet.UNSUBSCRIBE:
		return pk.UnsubscribeDecode(body)
	case packet.UNSUBACK:
		return pk.UnsubackDecode(body)
	case packet.PINGREQ:
		return pk.PingreqDecode(body)
	case packet.PINGRESP:
		return pk.PingrespDecode(body)
	default:
		return pk.DisconnectDecode(body)
	}
}

// gomqtt is github.com/256dpi/gomqtt/packet: Encode into a reused buffer,
// Decode into a reused value (it copies payloads).
var gomqtt = impl{
	name: "gomqtt",
	encoder: func(p packet.Packet) func() []byte {
		g := gomqttPacket(p)
		buf := make([]byte, p.Size())
		return func() []byte {
			n, err := g.Encode(buf)
			if err != nil {
				panic(err)
			}
			return buf[:n]
		}
	},
	decoder: func(p packet.Packet, wire []byte) func() error {
		g := gomqttPacket(p)
		return func() error {
			_, err := g.Decode(wire)
			return err
		}
	},
}

func gomqttPacket(p packet.Packet) gomqttpkt.Generic {
	switch p := p.(type) {
	case *packet.Connect:
		g := gomqttpkt.NewConnect()
		g.ClientID, g.KeepAlive, g.CleanSession = string(p.ClientID), p.KeepAlive, p.CleanSession
		g.Username, g.Password = string(p.Username), string(p.Password)
		return g
	case *packet.Connack:
		g := gomqttpkt.NewConnack()
		g.SessionPresent, g.ReturnCode = p.SessionPresent, gomqttpkt.ConnackCode(p.ReturnCode)
		return g
	case *packet.Publish:
		g := gomqttpkt.NewPublish()
		g.ID, g.Dup = gomqttpkt.ID(p.PacketID), p.DUP
		g.Message = gomqttpkt.Message{Topic: string(p.Topic), Payload: p.Payload, QOS: gomqttpkt.QOS(p.QoS), Retain: p.Retain}
		return g
	case *packet.Puback:
		g := gomqttpkt.NewPuback()
		g.ID = gomqttpkt.ID(p.PacketID)
		return g
	case *packet.Pubrec:
		g := gomqttpkt.NewPubrec()
		g.ID = gomqttpkt.ID(p.PacketID)
		return g
	case *packet.Pubrel:
		g := gomqttpkt.NewPubrel()
		g.ID = gomqttpkt.ID(p.PacketID)
		return g
	case *packet.Pubcomp:
		g := gomqttpkt.NewPubcomp()
		g.ID = gomqttpkt.ID(p.PacketID)
		return g
	case *packet.Subscribe:
		g := gomqttpkt.NewSubscribe()
		g.ID = gomqttpkt.ID(p.PacketID)
		for _, s := range p.Subscriptions {
			g.Subscriptions = append(g.Subscriptions, gomqttpkt.Subscription{Topic: string(s.Filter), QOS: gomqttpkt.QOS(s.QoS)})
		}
		return g
	case *packet.Suback:
		g := gomqttpkt.NewSuback()
		g.ID = gomqttpkt.ID(p.PacketID)
		for _, c := range p.ReturnCodes {
			g.ReturnCodes = append(g.ReturnCodes, gomqttpkt.QOS(c))
		}
		return g
	case *packet.Unsubscribe:
		g := gomqttpkt.NewUnsubscribe()
		g.ID = gomqttpkt.ID(p.PacketID)
		for _, f := range p.Filters {
			g.Topics = append(g.Topics, string(f))
		}
		return g
	case *packet.Unsuback:
		g := gomqttpkt.NewUnsuback()
		g.ID = gomqttpkt.ID(p.PacketID)
		return g
	case *packet.Pingreq:
		return gomqttpkt.NewPingreq()
	case *packet.Pingresp:
		return gomqttpkt.NewPingresp()
	case *packet.Disconnect:
		return gomqttpkt.NewDisconnect()
	}
	panic(fmt.Sprint("no gomqtt packet for ", p.Type()))
}

// natiu is github.com/soypat/natiu-mqtt: its Tx writes to a reused buffer;
// decoding uses DecodeHeader and DecoderNoAlloc with a reused user buffer
// (PUBLISH, CONNECT, SUBSCRIBE, UNSUBSCRIBE; the payload is read into a
// reused buffer), and its Rx for the other types.
var natiu = impl{
	name: "natiu",
	encoder: func(p packet.Packet) func() []byte {
		w := &sink{}
		var tx natiupkt.Tx
		tx.SetTxTransport(w)
		write := natiuWriter(&tx, p)
		return func() []byte {
			w.Reset()
			if err := write(); err != nil {
				panic(err)
			}
			return w.Bytes()
		}
	},
	decoder: func(p packet.Packet, wire []byte) func() error {
		src := &source{}
		dec := natiupkt.DecoderNoAlloc{UserBuffer: make([]byte, 1024)}
		payload := make([]byte, 32<<10)
		var rx natiupkt.Rx
		rx.SetRxTransport(src)
		switch p.Type() {
		case packet.PUBLISH:
			return func() error {
				src.Reset(wire)
				h, _, err := natiupkt.DecodeHeader(src)
				if err != nil {
					return err
				}
				vp, n, err := dec.DecodePublish(src, h.Flags().QoS())
				if err != nil {
					return err
				}
				_, err = io.ReadFull(src, payload[:int(h.RemainingLength)-n])
				_ = vp
				return err
			}
		case packet.CONNECT:
			return func() error {
				src.Reset(wire)
				if _, _, err := natiupkt.DecodeHeader(src); err != nil {
					return err
				}
				_, _, err := dec.DecodeConnect(src)
				return err
			}
		case packet.SUBSCRIBE:
			return func() error {
				src.Reset(wire)
				h, _, err := natiupkt.DecodeHeader(src)
				if err != nil {
					return err
				}
				_, _, err = dec.DecodeSubscribe(src, h.RemainingLength)
				return err
			}
		case packet.UNSUBSCRIBE:
			return func() error {
				src.Reset(wire)
				h, _, err := natiupkt.DecodeHeader(src)
				if err != nil {
					return err
				}
				_, _, err = dec.DecodeUnsubscribe(src, h.RemainingLength)
				return err
			}
		}
		return func() error {
			src.Reset(wire)
			_, err := rx.ReadNextPacket()
			return err
		}
	},
}

func natiuWriter(tx *natiupkt.Tx, p packet.Packet) func() error {
	switch p := p.(type) {
	case *packet.Connect:
		vc := &natiupkt.VariablesConnect{
			Protocol: []byte("MQTT"), ProtocolLevel: 4, CleanSession: p.CleanSession, KeepAlive: p.KeepAlive,
			ClientID: p.ClientID, Username: p.Username, Password: p.Password,
		}
		return func() error { return tx.WriteConnect(vc) }
	case *packet.Connack:
		vc := natiupkt.VariablesConnack{ReturnCode: natiupkt.ConnectReturnCode(p.ReturnCode)}
		return func() error { return tx.WriteConnack(vc) }
	case *packet.Publish:
		flags, _ := natiupkt.NewPublishFlags(natiupkt.QoSLevel(p.QoS), p.DUP, p.Retain)
		h, _ := natiupkt.NewHeader(natiupkt.PacketPublish, flags, 0)
		vp := natiupkt.VariablesPublish{TopicName: p.Topic, PacketIdentifier: p.PacketID}
		return func() error { return tx.WritePublishPayload(h, vp, p.Payload) }
	case *packet.Puback:
		return func() error { return tx.WriteIdentified(natiupkt.PacketPuback, p.PacketID) }
	case *packet.Pubrec:
		return func() error { return tx.WriteIdentified(natiupkt.PacketPubrec, p.PacketID) }
	case *packet.Pubrel:
		return func() error { return tx.WriteIdentified(natiupkt.PacketPubrel, p.PacketID) }
	case *packet.Pubcomp:
		return func() error { return tx.WriteIdentified(natiupkt.PacketPubcomp, p.PacketID) }
	case *packet.Unsuback:
		return func() error { return tx.WriteIdentified(natiupkt.PacketUnsuback, p.PacketID) }
	case *packet.Subscribe:
		vs := natiupkt.VariablesSubscribe{PacketIdentifier: p.PacketID}
		for _, s := range p.Subscriptions {
			vs.TopicFilters = append(vs.TopicFilters, natiupkt.SubscribeRequest{TopicFilter: s.Filter, QoS: natiupkt.QoSLevel(s.QoS)})
		}
		return func() error { return tx.WriteSubscribe(vs) }
	case *packet.Suback:
		vs := natiupkt.VariablesSuback{PacketIdentifier: p.PacketID}
		for _, c := range p.ReturnCodes {
			vs.ReturnCodes = append(vs.ReturnCodes, natiupkt.QoSLevel(c))
		}
		return func() error { return tx.WriteSuback(vs) }
	case *packet.Unsubscribe:
		vu := natiupkt.VariablesUnsubscribe{PacketIdentifier: p.PacketID, Topics: p.Filters}
		return func() error { return tx.WriteUnsubscribe(vu) }
	case *packet.Pingreq:
		return func() error { return tx.WriteSimple(natiupkt.PacketPingreq) }
	case *packet.Pingresp:
		return func() error { return tx.WriteSimple(natiupkt.PacketPingresp) }
	case *packet.Disconnect:
		return func() error { return tx.WriteSimple(natiupkt.PacketDisconnect) }
	}
	panic("unreachable")
}

// sink is a reusable io.WriteCloser.
type sink struct{ bytes.Buffer }

func (*sink) Close() error { return nil }

// source is a reusable io.ReadCloser over a byte slice.
type source struct{ bytes.Reader }

func (*source) Close() error { return errors.New("closed") }
