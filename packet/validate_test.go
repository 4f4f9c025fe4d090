package packet

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// malformedCases are received packets that must be rejected, with the rule
// each breaks. They include the codec field cases BR-01, BR-05, BR-07 and
// BR-09, extended to every packet type and string field of the same kind.
var malformedCases = []struct {
	name string
	wire string
	rule string
}{
	// Packet types and fixed-header flags (BR-05).
	{"type 0", "00 00", "2.2.1"},
	{"type 15", "F0 00", "2.2.1"},
	{"PUBLISH QoS 3", "36 07 00 03 61 2F 62 00 01", "MQTT-3.3.1-4"},
	{"PUBLISH QoS 3 DUP retain", "3F 07 00 03 61 2F 62 00 01", "MQTT-3.3.1-4"},
	{"CONNECT flags 0001", "11 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 63 31", "MQTT-2.2.2-2"},
	{"CONNACK flags 0001", "21 02 00 00", "MQTT-2.2.2-2"},
	{"PUBACK flags 0010", "42 02 00 01", "MQTT-2.2.2-2"},
	{"PUBREC flags 0001", "51 02 00 01", "MQTT-2.2.2-2"},
	{"PUBREL flags 0000", "60 02 00 01", "MQTT-3.6.1-1"},
	{"PUBREL flags 0011", "63 02 00 01", "MQTT-3.6.1-1"},
	{"PUBCOMP flags 1000", "78 02 00 01", "MQTT-2.2.2-2"},
	{"SUBSCRIBE flags 0000", "80 08 00 01 00 03 61 2F 62 00", "MQTT-3.8.1-1"},
	{"SUBACK flags 0010", "92 03 00 01 00", "MQTT-2.2.2-2"},
	{"UNSUBSCRIBE flags 0000", "A0 07 00 01 00 03 61 2F 62", "MQTT-3.10.1-1"},
	{"UNSUBACK flags 0001", "B1 02 00 01", "MQTT-2.2.2-2"},
	{"PINGREQ flags 0100", "C4 00", "MQTT-2.2.2-2"},
	{"PINGRESP flags 0001", "D1 00", "MQTT-2.2.2-2"},
	{"DISCONNECT flags 0010", "E2 00", "MQTT-3.14.1-1"},

	// Remaining Length (BR-01).
	{"five length bytes", "30 80 80 80 80 01", "2.2.3"},
	{"five length bytes, all ones", "30 FF FF FF FF 7F", "2.2.3"},

	// Fixed-size packets with other lengths.
	{"CONNACK length 3 (MQTT 5 shape, BR-09)", "20 03 00 84 00", "3.2.1"},
	{"CONNACK length 1", "20 01 00", "3.2.1"},
	{"PUBACK length 3", "40 03 00 01 00", "3.4.1"},
	{"PUBREC length 1", "50 01 00", "3.5.1"},
	{"PUBREL length 0", "62 00", "3.6.1"},
	{"PUBCOMP length 4", "70 04 00 01 00 02", "3.7.1"},
	{"UNSUBACK length 3", "B0 03 00 01 00", "3.11.1"},
	{"PINGREQ length 1", "C0 01 00", "3.12.1"},
	{"PINGRESP length 1", "D0 01 00", "3.13.1"},
	{"DISCONNECT length 1", "E0 01 00", "3.14.1"},

	// Packet identifiers.
	{"PUBLISH QoS 1 id 0", "32 07 00 03 61 2F 62 00 00", "MQTT-2.3.1-1"},
	{"PUBACK id 0", "40 02 00 00", "MQTT-2.3.1-1"},
	{"PUBREL id 0", "62 02 00 00", "MQTT-2.3.1-1"},
	{"SUBSCRIBE id 0", "82 08 00 00 00 03 61 2F 62 00", "MQTT-2.3.1-1"},
	{"SUBACK id 0", "90 03 00 00 00", "MQTT-2.3.1-1"},
	{"UNSUBSCRIBE id 0", "A2 07 00 00 00 03 61 2F 62", "MQTT-2.3.1-1"},
	{"UNSUBACK id 0", "B0 02 00 00", "MQTT-2.3.1-1"},

	// CONNACK content (BR-09).
	{"CONNACK reserved return code 6", "20 02 00 06", "3.2.2.3"},
	{"CONNACK reserved return code 255", "20 02 00 FF", "3.2.2.3"},
	{"CONNACK reserved acknowledge flag", "20 02 02 00", "3.2.2.1"},
	{"CONNACK session present on refusal", "20 02 01 04", "MQTT-3.2.2-4"},

	// PUBLISH content (BR-07).
	{"PUBLISH DUP at QoS 0", "38 07 00 03 61 2F 62 68 69", "MQTT-3.3.1-2"},
	{"PUBLISH empty topic", "30 04 00 00 68 69", "MQTT-4.7.3-1"},
	{"PUBLISH topic #", "30 05 00 01 23 68 69", "MQTT-3.3.2-2"},
	{"PUBLISH topic with +", "30 05 00 03 61 2F 2B", "MQTT-3.3.2-2"},
	{"PUBLISH topic with U+0000", "30 05 00 03 61 00 62", "MQTT-1.5.3-2"},
	{"PUBLISH topic ill-formed UTF-8", "30 05 00 03 61 C3 28", "MQTT-1.5.3-1"},
	{"PUBLISH topic surrogate U+D800", "30 05 00 03 ED A0 80", "MQTT-1.5.3-1"},
	{"PUBLISH topic overlong NUL", "30 04 00 02 C0 80", "MQTT-1.5.3-1"},
	{"PUBLISH topic length past body", "30 04 00 05 61 62", "3.3.2"},
	{"PUBLISH QoS 1 without id", "32 05 00 03 61 2F 62", "3.3.2"},

	// CONNECT content (BR-09, BR-20).
	{"CONNECT protocol name MQTT level 3", "10 0E 00 04 4D 51 54 54 03 02 00 3C 00 02 63 31", "MQTT-3.1.2-2"},
	{"CONNECT protocol name MQTT level 5", "10 0E 00 04 4D 51 54 54 05 02 00 3C 00 02 63 31", "MQTT-3.1.2-2"},
	{"CONNECT protocol name mqtt", "10 0E 00 04 6D 71 74 74 04 02 00 3C 00 02 63 31", "MQTT-3.1.2-1"},
	{"CONNECT reserved flag", "10 0E 00 04 4D 51 54 54 04 03 00 3C 00 02 63 31", "MQTT-3.1.2-3"},
	{"CONNECT will QoS without will flag", "10 0E 00 04 4D 51 54 54 04 0A 00 3C 00 02 63 31", "MQTT-3.1.2-13"},
	{"CONNECT will retain without will flag (BR-20)", "10 0E 00 04 4D 51 54 54 04 22 00 3C 00 02 63 31", "MQTT-3.1.2-15"},
	{"CONNECT will QoS 3", "10 13 00 04 4D 51 54 54 04 1E 00 3C 00 02 63 31 00 01 74 00 00", "MQTT-3.1.2-14"},
	{"CONNECT will flag without will fields", "10 0E 00 04 4D 51 54 54 04 06 00 3C 00 02 63 31", "MQTT-3.1.2-9"},
	{"CONNECT will topic with #", "10 13 00 04 4D 51 54 54 04 06 00 3C 00 02 63 31 00 01 23 00 00", "MQTT-3.3.2-2"},
	{"CONNECT will topic with U+0000", "10 14 00 04 4D 51 54 54 04 06 00 3C 00 02 63 31 00 02 61 00 00 00", "MQTT-1.5.3-2"},
	{"CONNECT password without user name", "10 11 00 04 4D 51 54 54 04 42 00 3C 00 02 63 31 00 01 70", "MQTT-3.1.2-22"},
	{"CONNECT user name flag without user name", "10 0E 00 04 4D 51 54 54 04 82 00 3C 00 02 63 31", "MQTT-3.1.2-19"},
	{"CONNECT password flag without password", "10 11 00 04 4D 51 54 54 04 C2 00 3C 00 02 63 31 00 01 75", "MQTT-3.1.2-21"},
	{"CONNECT without client identifier", "10 0A 00 04 4D 51 54 54 04 02 00 3C", "MQTT-3.1.3-3"},
	{"CONNECT client id ill-formed UTF-8", "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 C3 28", "MQTT-1.5.3-1"},
	{"CONNECT client id with U+0000", "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 63 00", "MQTT-1.5.3-2"},
	{"CONNECT user name surrogate", "10 13 00 04 4D 51 54 54 04 82 00 3C 00 02 63 31 00 03 ED BF BF", "MQTT-1.5.3-1"},
	{"CONNECT trailing byte", "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 02 63 31 00", "3.1.3"},
	{"CONNECT variable header cut short", "10 05 00 04 4D 51 54", "3.1.2"},

	// SUBSCRIBE content.
	{"SUBSCRIBE no filter", "82 02 00 01", "MQTT-3.8.3-3"},
	{"SUBSCRIBE QoS 3", "82 08 00 01 00 03 61 2F 62 03", "MQTT-3-8.3-4"},
	{"SUBSCRIBE reserved QoS bits", "82 08 00 01 00 03 61 2F 62 04", "MQTT-3-8.3-4"},
	{"SUBSCRIBE filter sport/tennis#", "82 12 00 01 00 0D 73 70 6F 72 74 2F 74 65 6E 6E 69 73 23 00", "MQTT-4.7.1-2"},
	{"SUBSCRIBE filter #/a", "82 08 00 01 00 03 23 2F 61 00", "MQTT-4.7.1-2"},
	{"SUBSCRIBE filter sport+", "82 0B 00 01 00 06 73 70 6F 72 74 2B 00", "MQTT-4.7.1-3"},
	{"SUBSCRIBE empty filter", "82 05 00 01 00 00 00", "MQTT-4.7.3-1"},
	{"SUBSCRIBE filter with U+0000", "82 07 00 01 00 02 61 00 00", "MQTT-1.5.3-2"},
	{"SUBSCRIBE missing QoS byte", "82 07 00 01 00 03 61 2F 62", "3.8.3"},

	// SUBACK content.
	{"SUBACK no return code", "90 02 00 01", "MQTT-3.9.3-1"},
	{"SUBACK return code 3", "90 03 00 01 03", "MQTT-3.9.3-2"},
	{"SUBACK return code 0x81", "90 04 00 01 00 81", "MQTT-3.9.3-2"},

	// UNSUBSCRIBE content.
	{"UNSUBSCRIBE no filter", "A2 02 00 01", "MQTT-3.10.3-2"},
	{"UNSUBSCRIBE filter a/#/b", "A2 09 00 01 00 05 61 2F 23 2F 62", "MQTT-4.7.1-2"},
	{"UNSUBSCRIBE filter ill-formed UTF-8", "A2 06 00 01 00 02 C3 28", "MQTT-1.5.3-1"},
	{"UNSUBSCRIBE filter cut short", "A2 05 00 01 00 03 61", "3.10.3"},
}

func TestMalformed(t *testing.T) {
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			in := h(tc.wire)
			p, _, err := Parse(in)
			if err == nil {
				t.Fatalf("Parse accepted %s as %#v", tc.wire, p)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %T is not an *Error", err)
			}
			if e.Rule != tc.rule {
				t.Errorf("rule = %q, want %q (%v)", e.Rule, tc.rule, err)
			}
			if tc.rule != "" && strings.HasPrefix(tc.rule, "MQTT-") && !strings.Contains(err.Error(), "["+tc.rule+"]") {
				t.Errorf("message %q does not cite [%s]", err, tc.rule)
			}
			// The streaming decoder rejects it the same way.
			d := NewDecoder(bytes.NewReader(in), 0)
			if _, err := d.Next(); !errors.As(err, &e) || e.Rule != tc.rule {
				t.Errorf("Decoder.Next err = %v, want rule %s", err, tc.rule)
			}
		})
	}
}

// TestNonMinimalRemainingLength: accepted on decode (BR-01 input 5), as
// mosquitto, RabbitMQ and mqtt-packet accept it.
func TestNonMinimalRemainingLength(t *testing.T) {
	for _, wire := range []string{"C0 80 00", "C0 80 80 00", "C0 80 80 80 00", "40 82 00 00 01"} {
		p, n, err := Parse(h(wire))
		if err != nil || n != len(h(wire)) {
			t.Errorf("Parse(%s) = %v, %d, %v", wire, p, n, err)
		}
	}
}

// invalidCases are values AppendTo must refuse, leaving dst unchanged.
var invalidCases = []struct {
	name string
	p    Packet
	rule string
}{
	{"CONNECT empty client id without clean session", &Connect{}, "MQTT-3.1.3-7"},
	{"CONNECT level 5", &Connect{ProtocolLevel: 5, CleanSession: true}, "MQTT-3.1.2-2"},
	{"CONNECT MQTT 3.1 client id of 24 bytes", &Connect{ProtocolLevel: Level31, CleanSession: true, ClientID: []byte("123456789012345678901234")}, "3.1 3.1.3.1"},
	{"CONNECT MQTT 3.1 empty client id", &Connect{ProtocolLevel: Level31, CleanSession: true}, "3.1 3.1.3.1"},
	{"CONNECT client id with U+0000", &Connect{CleanSession: true, ClientID: []byte("a\x00")}, "MQTT-1.5.3-2"},
	{"CONNECT client id ill-formed", &Connect{CleanSession: true, ClientID: []byte{0xff}}, "MQTT-1.5.3-1"},
	{"CONNECT user name ill-formed", &Connect{CleanSession: true, UsernameFlag: true, Username: []byte{0xed, 0xa0, 0x80}}, "MQTT-1.5.3-1"},
	{"CONNECT will topic ill-formed", &Connect{CleanSession: true, WillFlag: true, WillTopic: []byte{0xc3}}, "MQTT-1.5.3-1"},
	{"SUBSCRIBE filter ill-formed", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: []byte{0xc3, 0x28}}}}, "MQTT-1.5.3-1"},
	{"UNSUBSCRIBE filter ill-formed", &Unsubscribe{PacketID: 1, Filters: [][]byte{{0xff}}}, "MQTT-1.5.3-1"},
	{"SUBSCRIBE filter too long", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bytes.Repeat([]byte("a"), 65536)}}}, "1.5.3"},
	{"CONNECT will QoS 3 (BR-20)", &Connect{CleanSession: true, WillFlag: true, WillQoS: 3, WillTopic: []byte("t")}, "MQTT-3.1.2-14"},
	{"CONNECT will topic empty (BR-20)", &Connect{CleanSession: true, WillFlag: true}, "MQTT-4.7.3-1"},
	{"CONNECT will topic with + (BR-20)", &Connect{CleanSession: true, WillFlag: true, WillTopic: []byte("a/+")}, "MQTT-3.3.2-2"},
	{"CONNECT will topic with # (BR-20)", &Connect{CleanSession: true, WillFlag: true, WillTopic: []byte("#")}, "MQTT-3.3.2-2"},
	{"CONNECT will topic with U+0000 (BR-20)", &Connect{CleanSession: true, WillFlag: true, WillTopic: []byte("a\x00")}, "MQTT-1.5.3-2"},
	{"CONNECT will retain without flag (BR-20)", &Connect{CleanSession: true, WillRetain: true}, "MQTT-3.1.2-15"},
	{"CONNECT will QoS without flag", &Connect{CleanSession: true, WillQoS: 1}, "MQTT-3.1.2-13"},
	{"CONNECT will topic without flag", &Connect{CleanSession: true, WillTopic: []byte("t")}, "MQTT-3.1.2-11"},
	{"CONNECT will message too long", &Connect{CleanSession: true, WillFlag: true, WillTopic: []byte("t"), WillMessage: make([]byte, 65536)}, "1.5.3"},
	{"CONNECT user name without flag", &Connect{CleanSession: true, Username: []byte("u")}, "MQTT-3.1.2-18"},
	{"CONNECT password without flag", &Connect{CleanSession: true, UsernameFlag: true, Password: []byte("p")}, "MQTT-3.1.2-20"},
	{"CONNECT password without user name", &Connect{CleanSession: true, PasswordFlag: true, Password: []byte("p")}, "MQTT-3.1.2-22"},
	{"CONNECT user name too long", &Connect{CleanSession: true, UsernameFlag: true, Username: bytes.Repeat([]byte("u"), 65536)}, "1.5.3"},
	{"CONNECT password too long", &Connect{CleanSession: true, UsernameFlag: true, PasswordFlag: true, Password: make([]byte, 65536)}, "1.5.3"},
	{"CONNACK reserved code", &Connack{ReturnCode: 6}, "3.2.2.3"},
	{"CONNACK session present on refusal", &Connack{SessionPresent: true, ReturnCode: 1}, "MQTT-3.2.2-4"},
	{"PUBLISH QoS 3 (BR-05)", &Publish{QoS: 3, PacketID: 1, Topic: []byte("a")}, "MQTT-3.3.1-4"},
	{"PUBLISH DUP at QoS 0", &Publish{DUP: true, Topic: []byte("a")}, "MQTT-3.3.1-2"},
	{"PUBLISH id at QoS 0", &Publish{PacketID: 1, Topic: []byte("a")}, "MQTT-2.3.1-5"},
	{"PUBLISH id 0 at QoS 1", &Publish{QoS: 1, Topic: []byte("a")}, "MQTT-2.3.1-1"},
	{"PUBLISH id 0 at QoS 2", &Publish{QoS: 2, Topic: []byte("a")}, "MQTT-2.3.1-1"},
	{"PUBLISH empty topic (BR-07)", &Publish{}, "MQTT-4.7.3-1"},
	{"PUBLISH topic hello/+/hi (BR-07)", &Publish{Topic: []byte("hello/+/hi")}, "MQTT-3.3.2-2"},
	{"PUBLISH topic cmnd/#/power (BR-07)", &Publish{Topic: []byte("cmnd/#/power")}, "MQTT-3.3.2-2"},
	{"PUBLISH topic a NUL (BR-07)", &Publish{Topic: []byte("a\x00")}, "MQTT-1.5.3-2"},
	{"PUBLISH topic surrogate", &Publish{Topic: []byte("\xed\xa0\x80")}, "MQTT-1.5.3-1"},
	{"PUBLISH topic too long", &Publish{Topic: bytes.Repeat([]byte("a"), 65536)}, "1.5.3"},
	{"PUBACK id 0", &Puback{}, "MQTT-2.3.1-1"},
	{"PUBREC id 0", &Pubrec{}, "MQTT-2.3.1-1"},
	{"PUBREL id 0", &Pubrel{}, "MQTT-2.3.1-1"},
	{"PUBCOMP id 0", &Pubcomp{}, "MQTT-2.3.1-1"},
	{"UNSUBACK id 0", &Unsuback{}, "MQTT-2.3.1-1"},
	{"SUBSCRIBE id 0", &Subscribe{Subscriptions: []Subscription{{Filter: []byte("a")}}}, "MQTT-2.3.1-1"},
	{"SUBSCRIBE empty", &Subscribe{PacketID: 1}, "MQTT-3.8.3-3"},
	{"SUBSCRIBE QoS 3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: []byte("a"), QoS: 3}}}, "MQTT-3-8.3-4"},
	{"SUBSCRIBE filter empty", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{}}}, "MQTT-4.7.3-1"},
	{"SUBSCRIBE filter a/#/b", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: []byte("a/#/b")}}}, "MQTT-4.7.1-2"},
	{"SUBSCRIBE filter a+", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: []byte("a+")}}}, "MQTT-4.7.1-3"},
	{"SUBSCRIBE filter +a", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: []byte("+a")}}}, "MQTT-4.7.1-3"},
	{"SUBACK empty", &Suback{PacketID: 1}, "MQTT-3.9.3-1"},
	{"SUBACK reserved code", &Suback{PacketID: 1, ReturnCodes: []SubackCode{3}}, "MQTT-3.9.3-2"},
	{"UNSUBSCRIBE empty", &Unsubscribe{PacketID: 1}, "MQTT-3.10.3-2"},
	{"UNSUBSCRIBE id 0", &Unsubscribe{Filters: [][]byte{[]byte("a")}}, "MQTT-2.3.1-1"},
	{"UNSUBSCRIBE filter sport/tennis#", &Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("sport/tennis#")}}, "MQTT-4.7.1-2"},
}

func TestInvalid(t *testing.T) {
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte{0xAA, 0xBB}
			got, err := tc.p.AppendTo(dst)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Rule != tc.rule {
				t.Errorf("err = %v, want rule %s", err, tc.rule)
			}
			if len(got) != 2 || got[0] != 0xAA || got[1] != 0xBB {
				t.Errorf("dst changed on error: % x", got)
			}
		})
	}
}

// TestEncoderFlagNibbles: PUBREL, SUBSCRIBE and UNSUBSCRIBE are written with
// flags 0010, every other non-PUBLISH type with 0000 (BR-05 item 7).
func TestEncoderFlagNibbles(t *testing.T) {
	for _, tc := range golden {
		b, _ := tc.p.AppendTo(nil)
		want, fixed := tc.p.Type().flags()
		if fixed && b[0]&0x0f != want {
			t.Errorf("%s: first byte %#x, want flags %#x", tc.name, b[0], want)
		}
		if b[0]>>4 != byte(tc.p.Type()) {
			t.Errorf("%s: type nibble %d", tc.name, b[0]>>4)
		}
	}
}

// TestTopicValidators covers the exported checks the client uses before
// anything is written (BR-07, BR-28).
func TestTopicValidators(t *testing.T) {
	for _, s := range []string{"/", "a//b", " ", "$shadow/operation/PRODUCTID1/dev01", "\uFEFF"} {
		if err := ValidTopicName(s); err != nil {
			t.Errorf("ValidTopicName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "hello/+/hi", "cmnd/#/power", "a\x00", "#", "+"} {
		if err := ValidTopicName(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidTopicName(%q) = %v, want ErrInvalid", s, err)
		}
	}
	for _, s := range []string{"#", "+", "+/#", "/#", "a/+/c", "sport/tennis/#", "+/+", "/+", "$SYS/#"} {
		if err := ValidTopicFilter(s); err != nil {
			t.Errorf("ValidTopicFilter(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"sport/tennis#", "sport+", "#/a", "a/#/b", "", "a\x00", "a/b#", "++", "a/+b"} {
		if err := ValidTopicFilter(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidTopicFilter(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

// TestConnectIdentifierRulesOnDecode: the client identifier rules that make
// a server answer CONNACK 0x02 are reported with their rule, so the server
// can tell them from other malformed packets.
func TestConnectIdentifierRulesOnDecode(t *testing.T) {
	for wire, rule := range map[string]string{
		"10 0C 00 04 4D 51 54 54 04 00 00 3C 00 00":                                    "MQTT-3.1.3-7",
		"10 0E 00 06 4D 51 49 73 64 70 03 02 00 3C 00 00":                              "3.1 3.1.3.1",
		"10 26 00 06 4D 51 49 73 64 70 03 02 00 3C 00 18 " + strings.Repeat("61 ", 24): "3.1 3.1.3.1",
	} {
		_, _, err := Parse(h(wire))
		var e *Error
		if !errors.As(err, &e) || e.Rule != rule {
			t.Errorf("%s: err = %v, want rule %s", wire, err, rule)
		}
	}
}
