package tencent

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestOperationTopics(t *testing.T) {
	if got, want := OperationTopic("ABCDEFGHIJ", "dev1"), "$sys/operation/ABCDEFGHIJ/dev1"; got != want {
		t.Errorf("OperationTopic = %q, want %q", got, want)
	}
	if got, want := OperationResultTopic("ABCDEFGHIJ", "dev1"), "$sys/operation/result/ABCDEFGHIJ/dev1"; got != want {
		t.Errorf("OperationResultTopic = %q, want %q", got, want)
	}
	d := vecDevice()
	if d.OperationTopic() != OperationTopic("ABCDEFGHIJ", "dev1") || d.OperationResultTopic() != OperationResultTopic("ABCDEFGHIJ", "dev1") {
		t.Errorf("DeviceInfo topic methods disagree")
	}
}

func TestTimeRequestPayload(t *testing.T) {
	if TimeRequestPayload != `{"type":"get","resource":["time"]}` {
		t.Errorf("TimeRequestPayload = %s", TimeRequestPayload)
	}
	var v struct {
		Type     string   `json:"type"`
		Resource []string `json:"resource"`
	}
	if err := json.Unmarshal([]byte(TimeRequestPayload), &v); err != nil || v.Type != "get" || !reflect.DeepEqual(v.Resource, []string{"time"}) {
		t.Errorf("TimeRequestPayload decodes to %+v, %v", v, err)
	}
}

func TestTimeReplyJSON(t *testing.T) {
	b, err := json.Marshal(TimeReply{Type: "get", Time: 1700000000, NTPTime1: 1700000000123, NTPTime2: 1700000000125})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"get","time":1700000000,"ntptime1":1700000000123,"ntptime2":1700000000125}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
}

func TestParseTimeReply(t *testing.T) {
	// Local clock: the request left at local time sent, the reply came back
	// 100 ms later. The local clock is arbitrary (here: way off).
	sent := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	recv := sent.Add(100 * time.Millisecond)

	tests := []struct {
		name    string
		payload string
		recv    time.Time
		want    time.Time
	}{
		{
			name:    "ntp",
			payload: `{"type":"get","time":1700000000,"ntptime1":1700000000123,"ntptime2":1700000000125}`,
			recv:    recv,
			// (123 + 125 + 100) / 2 = 174
			want: time.UnixMilli(1700000000174),
		},
		{
			name:    "ntp, sub-millisecond round trip",
			payload: `{"type":"get","time":1700000000,"ntptime1":1700000000123,"ntptime2":1700000000125}`,
			recv:    sent.Add(101 * time.Millisecond),
			want:    time.UnixMilli(1700000000174).Add(500 * time.Microsecond),
		},
		{
			name:    "ntp, zero round trip",
			payload: `{"type":"get","time":1700000000,"ntptime1":1700000000000,"ntptime2":1700000000000}`,
			recv:    sent,
			want:    time.UnixMilli(1700000000000),
		},
		{
			name:    "no ntp fields: time * 1000",
			payload: `{"type":"get","time":1700000000}`,
			recv:    recv,
			want:    time.Unix(1700000000, 0),
		},
		{
			name:    "only ntptime1: time * 1000",
			payload: `{"type":"get","time":1700000000,"ntptime1":1700000000123}`,
			recv:    recv,
			want:    time.Unix(1700000000, 0),
		},
		{
			name:    "extra fields",
			payload: `{"type":"get","time":1700000000,"ntptime1":1700000000123,"ntptime2":1700000000125,"result":0}`,
			recv:    recv,
			want:    time.UnixMilli(1700000000174),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTimeReply([]byte(tt.payload), sent, tt.recv)
			if err != nil {
				t.Fatalf("ParseTimeReply: %v", err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("ParseTimeReply = %v, want %v", got.UTC(), tt.want.UTC())
			}
		})
	}
}

func TestParseTimeReplyMonotonic(t *testing.T) {
	sent := time.Now()
	recv := sent.Add(40 * time.Millisecond)
	got, err := ParseTimeReply([]byte(`{"type":"get","time":1,"ntptime1":1700000000000,"ntptime2":1700000000010}`), sent, recv)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMilli(1700000000025); !got.Equal(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseTimeReplyErrors(t *testing.T) {
	sent := time.Unix(1000, 0)
	recv := sent.Add(time.Second)
	tests := []struct {
		name    string
		payload string
		recv    time.Time
		want    error // nil: any error
	}{
		{"not JSON", `type=get`, recv, ErrInvalidTimeReply},
		{"empty", ``, recv, ErrInvalidTimeReply},
		{"truncated", `{"type":"get","time":17`, recv, ErrInvalidTimeReply},
		{"time as string", `{"type":"get","time":"1700000000"}`, recv, ErrInvalidTimeReply},
		{"time as float", `{"type":"get","time":1700000000.5}`, recv, ErrInvalidTimeReply},
		{"ntptime as string", `{"type":"get","time":1,"ntptime1":"1","ntptime2":2}`, recv, ErrInvalidTimeReply},
		{"no time", `{"type":"get"}`, recv, ErrInvalidTimeReply},
		{"zero time", `{"type":"get","time":0}`, recv, ErrInvalidTimeReply},
		{"ntptime out of range", `{"type":"get","time":1,"ntptime1":-5,"ntptime2":1700000000000}`, recv, ErrInvalidTimeReply},
		{"ntptime too far apart", `{"type":"get","time":1,"ntptime1":1,"ntptime2":253402300799999}`, recv, ErrInvalidTimeReply},
		{"ssh message", `{"type":"ssh","switch":1}`, recv, ErrNotTimeReply},
		{"no type", `{"time":1700000000}`, recv, ErrNotTimeReply},
		{"received before sent", `{"type":"get","time":1,"ntptime1":1700000000000,"ntptime2":1700000000010}`, sent.Add(-time.Millisecond), nil},
		{"round trip over 100 years", `{"type":"get","time":1,"ntptime1":1700000000000,"ntptime2":1700000000010}`, sent.Add(101 * 365 * 24 * time.Hour), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTimeReply([]byte(tt.payload), sent, tt.recv)
			if err == nil {
				t.Fatalf("ParseTimeReply = %v, want error", got)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if !got.IsZero() {
				t.Errorf("time %v returned with the error", got)
			}
		})
	}
}
