package rawmqtt

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

func TestEncodeReadPacket(t *testing.T) {
	for _, n := range []int{0, 127, 128, 16383, 16384, 2097152} {
		b := Encode(TypePublish<<4|0x0b, bytes.Repeat([]byte{7}, n))
		p, err := ReadPacket(bytes.NewReader(b))
		if err != nil || p.Type != TypePublish || p.Flags != 0x0b || len(p.Body) != n {
			t.Fatalf("%d bytes: got type %d flags %#x, %d bytes, %v", n, p.Type, p.Flags, len(p.Body), err)
		}
	}
	if got := Encode(TypePuback<<4, make([]byte, 321)); !bytes.Equal(got[:3], []byte{0x40, 0xc1, 0x02}) {
		t.Errorf("header % x, want 40 c1 02", got[:3])
	}
	if _, err := ReadPacket(bytes.NewReader([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01})); err == nil {
		t.Error("5-byte remaining length read")
	}
	if _, err := ReadPacket(bytes.NewReader([]byte{0x30, 0x03, 0, 1})); err != io.ErrUnexpectedEOF {
		t.Errorf("short body: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestBuild(t *testing.T) {
	for _, tt := range []struct {
		name string
		got  []byte
		want string
	}{
		{"CONNECT 3.1.1", Connect(ConnectOpts{ClientID: "c"}), "10 0d 00 04 4d 51 54 54 04 02 00 00 00 01 63"},
		{"CONNECT 3.1", Connect(ConnectOpts{Version: 3, ClientID: "c", Username: "u", Password: []byte{}}),
			"10 14 00 06 4d 51 49 73 64 70 03 c2 00 00 00 01 63 00 01 75 00 00"},
		{"CONNECT 5", Connect(ConnectOpts{Version: 5, ClientID: "c", Username: "u"}),
			"10 11 00 04 4d 51 54 54 05 82 00 00 00 00 01 63 00 01 75"},
		{"SUBSCRIBE 3.1.1", Subscribe(4, 9, "a", 1), "82 06 00 09 00 01 61 01"},
		{"SUBSCRIBE 5", Subscribe(5, 9, "a", 2), "82 07 00 09 00 00 01 61 02"},
		{"PUBLISH QoS 0", Publish("a", "x", 0, 5, false), "30 04 00 01 61 78"},
		{"PUBLISH QoS 1 retained", Publish("a", "x", 1, 5, true), "33 06 00 01 61 00 05 78"},
		{"PUBACK", Puback(0x102), "40 02 01 02"},
	} {
		if got := fmt.Sprintf("% x", tt.got); got != tt.want {
			t.Errorf("%s: % x, want %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestParsePublish(t *testing.T) {
	for _, want := range []Message{{Topic: "a/b", Payload: "hi"}, {Topic: "t", QoS: 1, ID: 7}} {
		p, err := ReadPacket(bytes.NewReader(Publish(want.Topic, want.Payload, want.QoS, want.ID, false)))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := p.Publish(); err != nil || got != want {
			t.Errorf("Publish() = %+v, %v; want %+v", got, err, want)
		}
	}
	for _, p := range []Packet{
		{Type: TypePuback, Body: []byte{0, 1}},
		{Type: TypePublish, Body: []byte{0}},
		{Type: TypePublish, Body: []byte{0, 3, 'a'}},
		{Type: TypePublish, Flags: 2, Body: []byte{0, 1, 'a', 0}},
	} {
		if m, err := p.Publish(); err == nil {
			t.Errorf("%v: Publish() = %+v, want an error", p, m)
		}
	}
}
