package packet

import "testing"

// checklist lists every rule ../shared/docs/mqtt311-checklist.md marks E
// (the encoder refuses to produce it) or D (the decoder rejects it), and
// where a test shows it enforced. "table" means invalidCases (E) or
// malformedCases (D) hold a case citing the rule, which
// TestChecklistCoverage verifies; otherwise it names the test that shows
// the rule holds by construction.
var checklist = []struct {
	rule string
	e, d string // evidence for the encoder and the decoder; "" when the rule is not E, or not D
}{
	{"MQTT-1.5.3-1", "table", "table"},
	{"MQTT-1.5.3-2", "table", "table"},
	{"MQTT-1.5.3-3", "", "TestGoldenDecode (PUBLISH with U+FEFF), TestBOMKept"},
	{"1.5.3", "table", "by construction: a 2-byte length cannot exceed 65535"},
	{"2.2.3", "TestEncodeTooLarge, TestRemainingLengthEncoding", "table"},
	{"2.2.1", "", "table"},
	{"3.1.3", "", "table"}, // no bytes after the last field
	{"MQTT-2.2.2-1", "TestEncoderFlagNibbles", ""},
	{"MQTT-2.2.2-2", "", "table"},
	{"MQTT-2.3.1-1", "table", "table"},
	{"MQTT-2.3.1-5", "table", "TestGoldenDecode (PUBLISH QoS 0: no identifier read)"},
	{"MQTT-3.1.2-1", "TestGoldenEncode (protocol name MQTT)", "table"},
	{"MQTT-3.1.2-2", "table", "table"},
	{"MQTT-3.1.2-3", "TestGoldenEncode (reserved flag 0)", "table"},
	{"MQTT-3.1.2-9", "TestGoldenEncode (will fields written)", "table"},
	{"MQTT-3.1.2-11", "table", "by construction: will fields without the flag are trailing bytes (3.1.3)"},
	{"MQTT-3.1.2-13", "table", "table"},
	{"MQTT-3.1.2-14", "table", "table"},
	{"MQTT-3.1.2-15", "table", "table"},
	{"MQTT-3.1.2-18", "table", ""},
	{"MQTT-3.1.2-19", "TestGoldenEncode (user name written)", "table"},
	{"MQTT-3.1.2-20", "table", ""},
	{"MQTT-3.1.2-21", "TestGoldenEncode (password written)", "table"},
	{"MQTT-3.1.2-22", "table", "table"},
	{"MQTT-3.1.3-1", "TestGoldenEncode (payload order)", ""},
	{"MQTT-3.1.3-3", "TestGoldenEncode (client identifier first)", "table"},
	{"MQTT-3.1.3-4", "table (MQTT-1.5.3-1 on the client identifier)", "table (MQTT-1.5.3-1 on the client identifier)"},
	{"MQTT-3.1.3-7", "table", "TestConnectIdentifierRulesOnDecode"},
	{"MQTT-3.1.3-10", "table (will topic: MQTT-1.5.3-1, MQTT-3.3.2-2)", "table (will topic)"},
	{"MQTT-3.1.3-11", "table (user name: MQTT-1.5.3-1)", "table (user name surrogate)"},
	{"3.2.1", "", "table"},
	{"3.2.2.1", "", "table"},
	{"3.2.2.3", "table", "table"},
	{"MQTT-3.2.2-4", "table", "table"},
	{"MQTT-3.3.1-2", "table", "table"},
	{"MQTT-3.3.1-4", "table", "table"},
	{"MQTT-3.3.2-1", "table (topic name: MQTT-1.5.3-1)", "table (topic name: MQTT-1.5.3-1)"},
	{"MQTT-3.3.2-2", "table", "table"},
	{"3.4.1", "", "table"},
	{"3.5.1", "", "table"},
	{"MQTT-3.6.1-1", "TestGoldenEncode (62)", "table"},
	{"3.7.1", "", "table"},
	{"MQTT-3.8.1-1", "TestGoldenEncode (82)", "table"},
	{"MQTT-3.8.3-1", "table (filter: MQTT-1.5.3-1)", "table (filter: MQTT-1.5.3-2)"},
	{"MQTT-3.8.3-3", "table", "table"},
	{"MQTT-3-8.3-4", "table", "table"},
	{"MQTT-3.9.3-2", "table", "table"},
	{"MQTT-3.10.1-1", "TestGoldenEncode (A2)", "table"},
	{"MQTT-3.10.3-1", "table (filter: MQTT-1.5.3-1)", "table (filter: MQTT-1.5.3-1)"},
	{"MQTT-3.10.3-2", "table", "table"},
	{"3.11.1", "", "table"},
	{"3.12.1", "", "table"},
	{"3.13.1", "", "table"},
	{"3.14.1", "", "table"},
	{"MQTT-3.14.1-1", "TestGoldenEncode (E0 00)", "table"},
	{"MQTT-4.7.1-1", "table (MQTT-3.3.2-2)", "table (MQTT-3.3.2-2)"},
	{"MQTT-4.7.1-2", "table", "table"},
	{"MQTT-4.7.1-3", "table", "table"},
	{"MQTT-4.7.3-1", "table", "table"},
	{"MQTT-4.7.3-2", "table (MQTT-1.5.3-2)", "table (MQTT-1.5.3-2)"},
	{"MQTT-4.7.3-3", "table (1.5.3)", "by construction: a 2-byte length"},
}

// TestChecklistCoverage: every rule whose evidence is "table" has a case
// citing it, so dropping a check or a case fails here.
func TestChecklistCoverage(t *testing.T) {
	inE, inD := map[string]bool{}, map[string]bool{}
	for _, c := range invalidCases {
		inE[c.rule] = true
	}
	for _, c := range malformedCases {
		inD[c.rule] = true
	}
	for _, r := range checklist {
		if r.e == "table" && !inE[r.rule] {
			t.Errorf("%s: no encode case refuses it", r.rule)
		}
		if r.d == "table" && !inD[r.rule] {
			t.Errorf("%s: no decode case rejects it", r.rule)
		}
	}
}

// TestBOMKept: U+FEFF at the start of a string is an ordinary character,
// never stripped [MQTT-1.5.3-3].
func TestBOMKept(t *testing.T) {
	p, _, err := Parse(h("30 07 00 05 EF BB BF 61 62"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(p.(*Publish).Topic); got != "\uFEFFab" {
		t.Errorf("topic %q, want U+FEFF kept", got)
	}
	c, _, err := Parse(h("10 11 00 04 4D 51 54 54 04 02 00 3C 00 05 EF BB BF 69 64"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.(*Connect).ClientID); got != "\uFEFFid" {
		t.Errorf("client identifier %q, want U+FEFF kept", got)
	}
}
