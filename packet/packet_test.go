package packet

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// h decodes space-separated hex bytes such as "30 02 00 05".
func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// golden holds the wire form of every packet type, both directions.
var golden = []struct {
	name string
	p    Packet
	wire string
}{
	{
		name: "CONNECT clean session, keep alive 60 (BR-09)",
		p:    &Connect{CleanSession: true, KeepAlive: 60, ClientID: []byte("c1")},
		wire: "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 63 31",
	},
	{
		name: "CONNECT will QoS 1 retain, empty will message (BR-20)",
		p: &Connect{
			CleanSession: true, KeepAlive: 60, ClientID: []byte("c1"),
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: []byte("s/status"), WillMessage: []byte{},
		},
		wire: "10 1A 00 04 4D 51 54 54 04 2E 00 3C 00 02 63 31 00 08 73 2F 73 74 61 74 75 73 00 00",
	},
	{
		name: "CONNECT user name and password",
		p: &Connect{
			CleanSession: true, ClientID: []byte("c1"),
			UsernameFlag: true, Username: []byte("u"), PasswordFlag: true, Password: []byte("p"),
		},
		wire: "10 14 00 04 4D 51 54 54 04 C2 00 00 00 02 63 31 00 01 75 00 01 70",
	},
	{
		name: "CONNECT empty user name, persistent session",
		p:    &Connect{KeepAlive: 900, ClientID: []byte("dev"), UsernameFlag: true, Username: []byte{}},
		wire: "10 11 00 04 4D 51 54 54 04 80 03 84 00 03 64 65 76 00 00",
	},
	{
		name: "CONNECT MQTT 3.1 (MQIsdp, level 3)",
		p:    &Connect{ProtocolLevel: Level31, CleanSession: true, KeepAlive: 60, ClientID: []byte("c1")},
		wire: "10 10 00 06 4D 51 49 73 64 70 03 02 00 3C 00 02 63 31",
	},
	{
		name: "CONNACK accepted",
		p:    &Connack{},
		wire: "20 02 00 00",
	},
	{
		name: "CONNACK session present",
		p:    &Connack{SessionPresent: true},
		wire: "20 02 01 00",
	},
	{
		name: "CONNACK not authorized",
		p:    &Connack{ReturnCode: NotAuthorized},
		wire: "20 02 00 05",
	},
	{
		name: "PUBLISH QoS 0",
		p:    &Publish{Topic: []byte("a/b"), Payload: []byte("hi")},
		wire: "30 07 00 03 61 2F 62 68 69",
	},
	{
		name: "PUBLISH QoS 0 empty payload retained",
		p:    &Publish{Retain: true, Topic: []byte("a/b"), Payload: []byte{}},
		wire: "31 05 00 03 61 2F 62",
	},
	{
		name: "PUBLISH QoS 1 DUP retain",
		p:    &Publish{DUP: true, QoS: 1, Retain: true, Topic: []byte("a/b"), PacketID: 10, Payload: []byte("hi")},
		wire: "3B 09 00 03 61 2F 62 00 0A 68 69",
	},
	{
		name: "PUBLISH QoS 2, topic with $ and U+FEFF",
		p:    &Publish{QoS: 2, Topic: []byte("$s/\uFEFF"), PacketID: 0xFFFF, Payload: []byte{0}},
		wire: "34 0B 00 06 24 73 2F EF BB BF FF FF 00",
	},
	{
		name: "PUBACK",
		p:    &Puback{PacketID: 1},
		wire: "40 02 00 01",
	},
	{
		name: "PUBREC",
		p:    &Pubrec{PacketID: 2},
		wire: "50 02 00 02",
	},
	{
		name: "PUBREL",
		p:    &Pubrel{PacketID: 3},
		wire: "62 02 00 03",
	},
	{
		name: "PUBCOMP",
		p:    &Pubcomp{PacketID: 0x1234},
		wire: "70 02 12 34",
	},
	{
		name: "SUBSCRIBE two filters",
		p: &Subscribe{PacketID: 1, Subscriptions: []Subscription{
			{Filter: []byte("a/+"), QoS: 1},
			{Filter: []byte("#"), QoS: 2},
		}},
		wire: "82 0C 00 01 00 03 61 2F 2B 01 00 01 23 02",
	},
	{
		name: "SUBACK granted QoS 1 and failure",
		p:    &Suback{PacketID: 1, ReturnCodes: []SubackCode{GrantedQoS1, SubackFailure}},
		wire: "90 04 00 01 01 80",
	},
	{
		name: "UNSUBSCRIBE two filters",
		p:    &Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte("a/+"), []byte("#")}},
		wire: "A2 0A 00 02 00 03 61 2F 2B 00 01 23",
	},
	{
		name: "UNSUBACK",
		p:    &Unsuback{PacketID: 2},
		wire: "B0 02 00 02",
	},
	{name: "PINGREQ", p: &Pingreq{}, wire: "C0 00"},
	{name: "PINGRESP", p: &Pingresp{}, wire: "D0 00"},
	{name: "DISCONNECT", p: &Disconnect{}, wire: "E0 00"},
}

var cmpOpts = cmp.Options{cmpopts.EquateEmpty()}

// decoded returns p as Parse gives it back: the protocol level explicit.
func decoded(p Packet) Packet {
	if c, ok := p.(*Connect); ok && c.ProtocolLevel == 0 {
		cc := *c
		cc.ProtocolLevel = Level311
		return &cc
	}
	return p
}

func TestGoldenEncode(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			want := h(tc.wire)
			prefix := []byte("xyz")
			got, err := tc.p.AppendTo(prefix)
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if !bytes.Equal(got[:3], prefix) {
				t.Fatalf("AppendTo changed the bytes before dst's length")
			}
			if diff := cmp.Diff(want, got[3:]); diff != "" {
				t.Errorf("wire form (-want +got):\n%s", diff)
			}
			if n := tc.p.Size(); n != len(want) {
				t.Errorf("Size() = %d, want %d", n, len(want))
			}
		})
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			wire := h(tc.wire)
			// Trailing bytes belong to the next packet and must be left alone.
			in := append(append([]byte{}, wire...), 0xE0, 0x00)
			p, n, err := Parse(in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n != len(wire) {
				t.Errorf("Parse consumed %d bytes, want %d", n, len(wire))
			}
			if diff := cmp.Diff(decoded(tc.p), p, cmpOpts); diff != "" {
				t.Errorf("decoded packet (-want +got):\n%s", diff)
			}
			// Unmarshal into a caller-owned value of the same type.
			v := New(tc.p.Type())
			if _, err := Unmarshal(wire, v); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if diff := cmp.Diff(decoded(tc.p), v, cmpOpts); diff != "" {
				t.Errorf("Unmarshal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnmarshalTypeMismatch(t *testing.T) {
	_, err := Unmarshal(h("40 02 00 01"), &Pubrec{})
	if !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("err = %v, want ErrTypeMismatch", err)
	}
}

func TestDecodedFieldsAliasInput(t *testing.T) {
	in := h("30 07 00 03 61 2F 62 68 69")
	var p Publish
	if _, err := Unmarshal(in, &p); err != nil {
		t.Fatal(err)
	}
	in[4] = 'X'
	in[7] = 'Y'
	if string(p.Topic) != "X/b" || string(p.Payload) != "Yi" {
		t.Fatalf("Topic %q Payload %q do not alias the input", p.Topic, p.Payload)
	}
	c := p.Clone()
	in[4], in[7] = 'Z', 'Z'
	if string(c.Topic) != "X/b" || string(c.Payload) != "Yi" {
		t.Fatalf("Clone aliases the input: %q %q", c.Topic, c.Payload)
	}
}

func TestCloneDeep(t *testing.T) {
	buf := h("82 0C 00 01 00 03 61 2F 2B 01 00 01 23 02")
	p, _, err := Parse(buf)
	if err != nil {
		t.Fatal(err)
	}
	sub := p.(*Subscribe).Clone()
	buf2 := h("A2 0A 00 02 00 03 61 2F 2B 00 01 23")
	p2, _, _ := Parse(buf2)
	unsub := p2.(*Unsubscribe).Clone()
	buf3 := h("90 04 00 01 01 80")
	p3, _, _ := Parse(buf3)
	suback := p3.(*Suback).Clone()
	for _, b := range [][]byte{buf, buf2, buf3} {
		for i := range b {
			b[i] = 0
		}
	}
	if diff := cmp.Diff(golden[16].p, sub, cmpOpts); diff != "" {
		t.Errorf("Subscribe.Clone (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(golden[18].p, unsub, cmpOpts); diff != "" {
		t.Errorf("Unsubscribe.Clone (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(golden[17].p, suback, cmpOpts); diff != "" {
		t.Errorf("Suback.Clone (-want +got):\n%s", diff)
	}
}

// TestRemainingLengthEncoding covers the byte-count boundaries of spec 2.2.3
// (field case BR-02).
func TestRemainingLengthEncoding(t *testing.T) {
	for _, tc := range []struct {
		n    int
		wire string
	}{
		{0, "00"},
		{127, "7F"},
		{128, "80 01"},
		{16013, "8D 7D"},
		{16383, "FF 7F"},
		{16384, "80 80 01"},
		{17013, "F5 84 01"},
		{2097151, "FF FF 7F"},
		{2097152, "80 80 80 01"},
		{268435455, "FF FF FF 7F"},
	} {
		got := appendVarint(nil, tc.n)
		if diff := cmp.Diff(h(tc.wire), got); diff != "" {
			t.Errorf("appendVarint(%d) (-want +got):\n%s", tc.n, diff)
		}
		if s := sizeVarint(tc.n); s != len(got) {
			t.Errorf("sizeVarint(%d) = %d, want %d", tc.n, s, len(got))
		}
		v, n := consumeVarint(got)
		if v != tc.n || n != len(got) {
			t.Errorf("consumeVarint(%s) = %d, %d; want %d, %d", tc.wire, v, n, tc.n, len(got))
		}
	}
}

// TestPublishSizeAtLengthBoundary: RL 127 takes 129 bytes, RL 128 takes 131
// (BR-02), and Size agrees with AppendTo.
func TestPublishSizeAtLengthBoundary(t *testing.T) {
	for _, tc := range []struct{ remaining, total int }{{127, 129}, {128, 131}, {16383, 16386}, {16384, 16388}} {
		p := &Publish{Topic: []byte("t"), Payload: make([]byte, tc.remaining-3)}
		b, err := p.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != tc.total || p.Size() != tc.total {
			t.Errorf("RL %d: len %d, Size %d; want %d", tc.remaining, len(b), p.Size(), tc.total)
		}
		q, n, err := Parse(b)
		if err != nil || n != len(b) || len(q.(*Publish).Payload) != tc.remaining-3 {
			t.Errorf("RL %d: Parse = %v, %d, %v", tc.remaining, q, n, err)
		}
	}
}

func TestEncodeTooLarge(t *testing.T) {
	p := &Publish{Topic: []byte("t"), Payload: make([]byte, MaxRemainingLength-3+1)}
	dst := []byte{1, 2}
	got, err := p.AppendTo(dst)
	if !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("err = %v, want ErrPacketTooLarge", err)
	}
	if len(got) != 2 {
		t.Fatalf("dst changed on error")
	}
	p.Payload = p.Payload[:len(p.Payload)-1]
	if p.Size() != MaxPacketSize {
		t.Fatalf("Size = %d, want %d", p.Size(), MaxPacketSize)
	}
}

func TestConnectClone(t *testing.T) {
	wire := h("10 1A 00 04 4D 51 54 54 04 2E 00 3C 00 02 63 31 00 08 73 2F 73 74 61 74 75 73 00 00")
	p, _, err := Parse(wire)
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Connect).Clone()
	for i := range wire {
		wire[i] = 0
	}
	if diff := cmp.Diff(decoded(golden[1].p), c, cmpOpts); diff != "" {
		t.Errorf("Connect.Clone (-want +got):\n%s", diff)
	}
	full := &Connect{CleanSession: true, ClientID: []byte("id"), WillFlag: true, WillTopic: []byte("w"), WillMessage: []byte("m"),
		UsernameFlag: true, Username: []byte("u"), PasswordFlag: true, Password: []byte("p")}
	c = full.Clone()
	full.ClientID[0], full.WillTopic[0], full.WillMessage[0], full.Username[0], full.Password[0] = 'X', 'X', 'X', 'X', 'X'
	if string(c.ClientID) != "id" || string(c.WillTopic) != "w" || string(c.WillMessage) != "m" || string(c.Username) != "u" || string(c.Password) != "p" {
		t.Errorf("Clone aliases the original: %+v", c)
	}
}
