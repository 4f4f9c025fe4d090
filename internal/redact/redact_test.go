package redact_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
	"github.com/devicemq/mqtt/tencent"
)

// TestNoSecretPrints: every type that holds a secret shows none of it
// under any fmt verb, as a value or a pointer, nested or not, nor under
// slog's text and JSON handlers; each still shows a field that is no
// secret, so the test cannot pass by printing nothing.
func TestNoSecretPrints(t *testing.T) {
	const secret = "s3cr3t-PASSWORD"
	opts := client.Options{ClientID: "dev-1", Username: "user", Password: []byte(secret)}
	cases := []struct {
		name string
		v    any
		show string
	}{
		{"client.Options", opts, "dev-1"},
		{"client.SessionOptions", client.SessionOptions{Options: opts}, "dev-1"},
		{"tencent.DeviceInfo", tencent.DeviceInfo{ProductID: "PRODUCT123", DeviceName: "dev", DeviceSecret: secret, ProductSecret: secret}, "PRODUCT123"},
		{"tencent.Credentials", tencent.Credentials{ClientID: "PRODUCT123dev", Username: "u;1", Password: []byte(secret)}, "PRODUCT123dev"},
		{"netx.Options", netx.Options{CAFile: "/ca.pem", Proxy: "http://user:" + secret + "@proxy:3128"}, "/ca.pem"},
		{"netx.WebSocketOptions", netx.WebSocketOptions{Origin: "http://origin", Header: http.Header{"Authorization": {"Bearer " + secret}}}, "http://origin"},
		{"packet.Connect", packet.Connect{ClientID: []byte("dev-1"), UsernameFlag: true, Username: []byte("user"), PasswordFlag: true, Password: []byte(secret)}, "PasswordFlag:true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			type wrapper struct {
				Inner any
			}
			var outs []string
			for _, v := range []any{c.v, &c.v, wrapper{c.v}, []any{c.v}} {
				for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
					outs = append(outs, verb+" "+fmt.Sprintf(verb, v))
				}
			}
			outs = append(outs, "Sprint "+fmt.Sprint(c.v), "error "+fmt.Errorf("wrapped: %v", c.v).Error())
			for _, h := range []func(*bytes.Buffer) slog.Handler{
				func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
				func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
			} {
				var b bytes.Buffer
				slog.New(h(&b)).Info("x", "v", c.v, slog.Any("any", c.v), slog.Group("g", "v", c.v))
				outs = append(outs, "slog "+b.String())
			}
			shown := false
			for _, o := range outs {
				if strings.Contains(o, secret) || strings.Contains(o, fmt.Sprintf("%x", secret)) {
					t.Errorf("secret shown: %s", o)
				}
				if strings.Contains(o, c.show) {
					shown = true
				}
			}
			if !shown {
				t.Errorf("%q never shown: %v", c.show, outs)
			}
		})
	}
}

// TestNoSecretInErrors: URLs that do not parse, with a password in them,
// give errors that do not show it.
func TestNoSecretInErrors(t *testing.T) {
	const secret = "s3cr3t-PASSWORD"
	for _, raw := range []string{
		"tcp://user:" + secret + "@[::1",
		"ws://user:" + secret + "@host:%zz/mqtt",
		"wss://user:" + secret + "@[bad/mqtt",
	} {
		_, err := netx.URL(raw, nil)
		if err == nil {
			t.Errorf("netx.URL(%q): no error", raw)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("netx.URL error shows the password: %v", err)
		}
	}
	d, err := netx.URL("tcp://127.0.0.1:1", &netx.Options{Proxy: "http://user:" + secret + "@[bad"})
	if err == nil {
		_, err = d.Dial(t.Context())
	}
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("a bad proxy URL gives %v, want an error without the password", err)
	}
}
