package main

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devicemq/mqtt/tencent"
)

// TestRun runs the sample's flow against the embedded stand-in over both
// transports and checks the packet log: one DEBUG line per control packet
// sent and received, in the flow's order, and never a password.
func TestRun(t *testing.T) {
	for _, transport := range []tencent.Transport{tencent.WS, tencent.TCP, tencent.TLS, tencent.WSS} {
		t.Run(string(transport), func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := run(ctx, log, "", transport); err != nil {
				t.Fatalf("run: %v\n%s", err, buf.String())
			}
			var packets []string
			for _, line := range strings.Split(buf.String(), "\n") {
				if strings.Contains(line, `msg="mqtt sent"`) || strings.Contains(line, `msg="mqtt received"`) {
					dir := "sent"
					if strings.Contains(line, "received") {
						dir = "received"
					}
					_, after, _ := strings.Cut(line, "packet=")
					typ, _, _ := strings.Cut(after, " ")
					packets = append(packets, dir+" "+typ)
				}
				if strings.Contains(strings.ToLower(line), "hmacsha256") {
					t.Errorf("log line shows the password: %s", line)
				}
			}
			// The PUBACK goes out after the handler returns, which races with
			// the flow's next steps: when DISCONNECT beats it, it is not sent
			// at all [MQTT-3.14.4-2]. It must only follow the PUBLISH it
			// answers, once at most.
			got := slices.DeleteFunc(slices.Clone(packets), func(s string) bool { return s == "sent PUBACK" })
			if ack, pub := slices.Index(packets, "sent PUBACK"), slices.Index(packets, "received PUBLISH"); (ack >= 0 && ack < pub) || len(packets)-len(got) > 1 {
				t.Errorf("PUBACK before its PUBLISH, or twice: %v", packets)
			}
			if i := slices.Index(packets, "sent DISCONNECT"); i >= 0 && i != len(packets)-1 {
				t.Errorf("a packet sent after DISCONNECT: %v", packets)
			}
			want := []string{
				"sent CONNECT", "received CONNACK",
				"sent SUBSCRIBE", "received SUBACK",
				"sent PUBLISH", "received PUBLISH",
				"sent UNSUBSCRIBE", "received UNSUBACK",
				"sent DISCONNECT",
			}
			if !slices.Equal(got, want) {
				t.Errorf("packet log:\n got %v\nwant %v\n%s", packets, want, buf.String())
			}
		})
	}
}

// TestRunBadDevice: a missing device file is a clear error.
func TestRunBadDevice(t *testing.T) {
	err := run(context.Background(), slog.New(slog.DiscardHandler), "/nonexistent/device_info.json", tencent.WS)
	if err == nil || !strings.Contains(err.Error(), "device_info.json") {
		t.Fatalf("run = %v", err)
	}
}
