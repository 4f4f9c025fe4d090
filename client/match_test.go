package client

import "testing"

// TestMatchTopic is the filter matching table of field case BR-28, with the
// non-normative examples of spec 4.7.1 and the "$" rule [MQTT-4.7.2-1].
func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"sport/#", "sport", true},
		{"sport/#", "sport/", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player2", false},
		{"/#", "/", true},
		{"#", "sport", true},
		{"#", "/", true},
		{"+", "sport", true},
		{"+/#", "sport", true},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"sport/+/player1", "sport/tennis/player1", true},
		{"a/+/c", "a//c", true},
		{"a/+", "a/", true},
		{"+", "/finance", false},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"test/6/#", "test/3", false},
		{"home/log/#", "home/login/x/set", false},
		{"a/b", "a/b/", false},
		{"a/b/", "a/b", false},
		{"ACCOUNTS", "Accounts", false},
		{"a/b", "a/b", true},
		{"#", "$SYS/broker", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/broker", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"$sys/operation/result/P/d", "$sys/operation/result/P/d", true},
	} {
		if got := MatchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}
