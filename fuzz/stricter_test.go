package fuzz

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/devicemq/mqtt/packet"
)

func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// stricterCases names, for every rule in stricter, an input this codec
// rejects for that rule and mochi's decoder accepts.
var stricterCases = map[string]string{
	"2.2.3":         "E0 80 80 80 80 30",
	"3.1.3":         "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 02 63 31 00",
	"3.2.1":         "20 03 00 00 00",
	"3.2.2.1":       "20 02 02 00",
	"3.2.2.3":       "20 02 00 06",
	"3.4.1":         "40 03 00 01 00",
	"3.5.1":         "50 03 00 01 00",
	"3.6.1":         "62 03 00 01 00",
	"3.7.1":         "70 03 00 01 00",
	"3.11.1":        "B0 03 00 01 00",
	"3.12.1":        "C0 01 00",
	"3.13.1":        "D0 01 00",
	"3.14.1":        "E0 01 00",
	"3.1 3.1.3.1":   "10 0E 00 06 4D 51 49 73 64 70 03 02 00 3C 00 00",
	"MQTT-1.5.3-1":  "10 13 00 04 4D 51 54 54 04 82 00 3C 00 02 63 31 00 03 ED A0 80",
	"MQTT-1.5.3-2":  "10 12 00 04 4D 51 54 54 04 82 00 3C 00 02 63 31 00 02 61 00",
	"MQTT-2.3.1-1":  "40 02 00 00",
	"MQTT-3.1.2-1":  "10 0E 00 04 6D 71 74 74 04 02 00 3C 00 02 63 31",
	"MQTT-3.1.2-2":  "10 0E 00 04 4D 51 54 54 03 02 00 3C 00 02 63 31",
	"MQTT-3.1.2-3":  "10 0E 00 04 4D 51 54 54 04 03 00 3C 00 02 63 31",
	"MQTT-3.1.2-13": "10 0E 00 04 4D 51 54 54 04 0A 00 3C 00 02 63 31",
	"MQTT-3.1.2-14": "10 13 00 04 4D 51 54 54 04 1E 00 3C 00 02 63 31 00 01 74 00 00",
	"MQTT-3.1.2-15": "10 0E 00 04 4D 51 54 54 04 22 00 3C 00 02 63 31",
	"MQTT-3.1.2-22": "10 11 00 04 4D 51 54 54 04 42 00 3C 00 02 63 31 00 01 70",
	"MQTT-3.1.3-7":  "10 0C 00 04 4D 51 54 54 04 00 00 3C 00 00",
	"MQTT-3.2.2-4":  "20 02 01 04",
	"MQTT-3.3.2-2":  "30 05 00 01 23 68 69",
	"MQTT-3.8.3-3":  "82 02 00 01",
	"MQTT-3.9.3-1":  "90 02 00 01",
	"MQTT-3.9.3-2":  "90 03 00 01 03",
	"MQTT-3.10.3-2": "A2 02 00 01",
	"MQTT-4.7.1-2":  "82 08 00 01 00 03 23 2F 61 00",
	"MQTT-4.7.1-3":  "82 0B 00 01 00 06 73 70 6F 72 74 2B 00",
	"MQTT-4.7.3-1":  "30 04 00 00 68 69",
}

// TestStricterThanMochi: each rule the differential fuzz target lets this
// codec enforce alone is shown with an input that this codec rejects for
// that rule and mochi's decoder accepts.
func TestStricterThanMochi(t *testing.T) {
	for rule := range stricter {
		wire, ok := stricterCases[rule]
		if !ok {
			t.Errorf("%s: no example input", rule)
			continue
		}
		in := hx(wire)
		_, _, err := packet.Parse(in)
		var e *packet.Error
		if !errors.As(err, &e) || e.Rule != rule {
			t.Errorf("%s: %s: this codec says %v", rule, wire, err)
		}
		if _, _, complete, merr := mochiParse(in); !complete || merr != nil {
			t.Errorf("%s: %s: mochi rejects it too (%v, complete %v): drop the rule from stricter", rule, wire, merr, complete)
		}
	}
	for rule := range stricterCases {
		if !stricter[rule] {
			t.Errorf("%s: example for a rule not in stricter", rule)
		}
	}
}
