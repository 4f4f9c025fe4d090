package tencent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
)

func TestHosts(t *testing.T) {
	tests := []struct {
		region Region
		mqtt   string
		ws     string
	}{
		{RegionChina, "ABCDEFGHIJ.iotcloud.tencentdevices.com", "ABCDEFGHIJ.ap-guangzhou.iothub.tencentdevices.com"},
		{"", "ABCDEFGHIJ.iotcloud.tencentdevices.com", "ABCDEFGHIJ.ap-guangzhou.iothub.tencentdevices.com"},
		{RegionUSEast, "ABCDEFGHIJ.us-east.iotcloud.tencentdevices.com", "ABCDEFGHIJ.us-east.iothub.tencentdevices.com"},
		{RegionEurope, "ABCDEFGHIJ.europe.iothub.tencentdevices.com", "ABCDEFGHIJ.europe.iothub.tencentdevices.com"},
		{RegionBangkok, "ABCDEFGHIJ.ap-bangkok.iothub.tencentdevices.com", "ABCDEFGHIJ.ap-bangkok.iothub.tencentdevices.com"},
		{"unknown", "ABCDEFGHIJ.iotcloud.tencentdevices.com", "ABCDEFGHIJ.ap-guangzhou.iothub.tencentdevices.com"},
	}
	for _, tt := range tests {
		t.Run(string(tt.region), func(t *testing.T) {
			if got := MQTTHost("ABCDEFGHIJ", tt.region); got != tt.mqtt {
				t.Errorf("MQTTHost = %q, want %q", got, tt.mqtt)
			}
			if got := WebSocketHost("ABCDEFGHIJ", tt.region); got != tt.ws {
				t.Errorf("WebSocketHost = %q, want %q", got, tt.ws)
			}
			if got, want := WebSocketURL("ABCDEFGHIJ", tt.region, true), "wss://"+tt.ws+"/mqtt"; got != want {
				t.Errorf("WebSocketURL(secure) = %q, want %q", got, want)
			}
			if got, want := WebSocketURL("ABCDEFGHIJ", tt.region, false), "ws://"+tt.ws+"/mqtt"; got != want {
				t.Errorf("WebSocketURL(plain) = %q, want %q", got, want)
			}

			d := &DeviceInfo{ProductID: "ABCDEFGHIJ", Region: tt.region}
			if got := d.MQTTHost(); got != tt.mqtt {
				t.Errorf("DeviceInfo.MQTTHost = %q, want %q", got, tt.mqtt)
			}
			if got := d.MQTTAddr(false); got != tt.mqtt+":1883" {
				t.Errorf("MQTTAddr(false) = %q", got)
			}
			if got := d.MQTTAddr(true); got != tt.mqtt+":8883" {
				t.Errorf("MQTTAddr(true) = %q", got)
			}
			if got := d.WebSocketHost(); got != tt.ws {
				t.Errorf("DeviceInfo.WebSocketHost = %q", got)
			}
			if got := d.WebSocketURL(true); got != "wss://"+tt.ws+"/mqtt" {
				t.Errorf("DeviceInfo.WebSocketURL = %q", got)
			}
		})
	}
}

func TestPorts(t *testing.T) {
	if MQTTPort != 1883 || MQTTTLSPort != 8883 || WebSocketPort != 80 || WebSocketTLSPort != 443 {
		t.Errorf("ports = %d %d %d %d", MQTTPort, MQTTTLSPort, WebSocketPort, WebSocketTLSPort)
	}
}

func TestRegionValid(t *testing.T) {
	for _, r := range []Region{"", RegionChina, RegionUSEast, RegionEurope, RegionBangkok} {
		if !r.Valid() {
			t.Errorf("%q.Valid() = false", r)
		}
	}
	for _, r := range []Region{"China", "ap-guangzhou", "us-west", " china"} {
		if r.Valid() {
			t.Errorf("%q.Valid() = true", r)
		}
	}
}

// TestRootCA: the shipped root is the one whose fingerprint the IoT Hub
// SDKs give.
func TestRootCA(t *testing.T) {
	block, _ := pem.Decode([]byte(RootCAPEM))
	if block == nil {
		t.Fatal("RootCAPEM is not PEM")
	}
	sum := sha256.Sum256(block.Bytes)
	if got := strings.ToUpper(hex.EncodeToString(sum[:])); got != "3B1FA1E1149E3F3BD3722730DBEF9EB72EC4B9FD95553063A9C60BA62778E740" {
		t.Errorf("fingerprint %s", got)
	}
	if RootCAs() == nil {
		t.Fatal("no pool")
	}
}

func TestTransportURLs(t *testing.T) {
	d := &DeviceInfo{ProductID: "ABCDEFGHIJ", DeviceName: "dev1", Region: RegionChina}
	for tr, want := range map[Transport]string{
		TCP: "tcp://ABCDEFGHIJ.iotcloud.tencentdevices.com:1883",
		TLS: "mqtts://ABCDEFGHIJ.iotcloud.tencentdevices.com:8883",
		WS:  "ws://ABCDEFGHIJ.ap-guangzhou.iothub.tencentdevices.com/mqtt",
		WSS: "wss://ABCDEFGHIJ.ap-guangzhou.iothub.tencentdevices.com/mqtt",
	} {
		got, err := d.URL(tr)
		if err != nil || got != want {
			t.Errorf("URL(%s) = %q, %v; want %q", tr, got, err, want)
		}
		if _, err := d.Dialer(tr, nil); err != nil {
			t.Errorf("Dialer(%s): %v", tr, err)
		}
	}
	if _, err := d.URL("quic"); err == nil {
		t.Error("unknown transport accepted")
	}
}
