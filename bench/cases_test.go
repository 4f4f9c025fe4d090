package bench

import (
	"bytes"

	"github.com/devicemq/mqtt/packet"
)

// topic29 is the 29-byte topic name of the PUBLISH cases.
const topic29 = "devices/ABCDEFGHIJ/dev01/data"

// filter is the topic filter of the SUBSCRIBE and UNSUBSCRIBE cases: the
// IoT Hub time reply topic.
const filter = "$sys/operation/result/ABCDEFGHIJ/dev1"

// benchCase is one packet, given as this module's value; the peer adapters
// build their own value with the same fields, and every implementation
// must produce and accept the same bytes (TestSameBytes).
type benchCase struct {
	name string
	p    packet.Packet
}

func publish(size int) *packet.Publish {
	return &packet.Publish{QoS: 1, PacketID: 42, Topic: []byte(topic29), Payload: bytes.Repeat([]byte{'x'}, size)}
}

var cases = []benchCase{
	{"CONNECT", &packet.Connect{
		KeepAlive: 240, ClientID: []byte("ABCDEFGHIJdev1"),
		UsernameFlag: true, Username: []byte("ABCDEFGHIJdev1;12010126;abcde;1700000000"),
		PasswordFlag: true, Password: []byte("31c8fe00f2e0daa941ceeaa66cd2f728e43fa5486f86812b433b0d53ee493b0e;hmacsha256"),
	}},
	{"CONNACK", &packet.Connack{}},
	{"PUBLISH-64B", publish(64)},
	{"PUBLISH-1KiB", publish(1024)},
	{"PUBLISH-16KiB", publish(16384)},
	{"PUBACK", &packet.Puback{PacketID: 42}},
	{"PUBREC", &packet.Pubrec{PacketID: 42}},
	{"PUBREL", &packet.Pubrel{PacketID: 42}},
	{"PUBCOMP", &packet.Pubcomp{PacketID: 42}},
	{"SUBSCRIBE", &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: 1}}}},
	{"SUBACK", &packet.Suback{PacketID: 1, ReturnCodes: []packet.SubackCode{1}}},
	{"UNSUBSCRIBE", &packet.Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte(filter)}}},
	{"UNSUBACK", &packet.Unsuback{PacketID: 2}},
	{"PINGREQ", &packet.Pingreq{}},
	{"PINGRESP", &packet.Pingresp{}},
	{"DISCONNECT", &packet.Disconnect{}},
}

// An impl is one codec under test. encoder returns a function that encodes
// the case once and returns the bytes (valid until its next call); decoder
// returns a function that decodes wire once. Either returns nil when the
// implementation has no API for the case.
type impl struct {
	name    string
	encoder func(p packet.Packet) func() []byte
	decoder func(p packet.Packet, wire []byte) func() error
}

var impls = []impl{devicemq, paho, mochi, gomqtt, natiu}

// devicemq is this module's codec: AppendTo into a reused buffer, Unmarshal
// into a reused value (fields alias the input).
var devicemq = impl{
	name: "devicemq",
	encoder: func(p packet.Packet) func() []byte {
		buf := make([]byte, 0, p.Size())
		return func() []byte {
			buf, _ = p.AppendTo(buf[:0])
			return buf
		}
	},
	decoder: func(p packet.Packet, wire []byte) func() error {
		v := packet.New(p.Type())
		return func() error {
			_, err := packet.Unmarshal(wire, v)
			return err
		}
	},
}
