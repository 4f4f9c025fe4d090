package tencent

import (
	"crypto/x509"
	"fmt"

	"crypto/tls"

	"github.com/devicemq/mqtt/netx"
)

// RootCAPEM is the self-signed root that IoT Hub's MQTT-over-TLS endpoints
// (port 8883) present certificates from: C=CN, ST=GuangDong, L=ShenZhen,
// O=Tencent, OU=Tencent Iothub, CN=www.tencent.com, valid from 2017-11-27 to
// 2032-11-23, SHA-256 fingerprint 3B:1F:A1:E1:14:9E:3F:3B:D3:72:27:30:DB:EF:
// 9E:B7:2E:C4:B9:FD:95:55:30:63:A9:C6:0B:A6:27:78:E7:40. Tencent's device
// SDKs embed the same certificate to verify port 8883. The WebSocket
// endpoint on port 443 uses a public Web PKI certificate instead, which the
// system roots verify.
const RootCAPEM = `-----BEGIN CERTIFICATE-----
MIIDxTCCAq2gAwIBAgIJALM1winYO2xzMA0GCSqGSIb3DQEBCwUAMHkxCzAJBgNV
BAYTAkNOMRIwEAYDVQQIDAlHdWFuZ0RvbmcxETAPBgNVBAcMCFNoZW5aaGVuMRAw
DgYDVQQKDAdUZW5jZW50MRcwFQYDVQQLDA5UZW5jZW50IElvdGh1YjEYMBYGA1UE
AwwPd3d3LnRlbmNlbnQuY29tMB4XDTE3MTEyNzA0MjA1OVoXDTMyMTEyMzA0MjA1
OVoweTELMAkGA1UEBhMCQ04xEjAQBgNVBAgMCUd1YW5nRG9uZzERMA8GA1UEBwwI
U2hlblpoZW4xEDAOBgNVBAoMB1RlbmNlbnQxFzAVBgNVBAsMDlRlbmNlbnQgSW90
aHViMRgwFgYDVQQDDA93d3cudGVuY2VudC5jb20wggEiMA0GCSqGSIb3DQEBAQUA
A4IBDwAwggEKAoIBAQDVxwDZRVkU5WexneBEkdaKs4ehgQbzpbufrWo5Lb5gJ3i0
eukbOB81yAaavb23oiNta4gmMTq2F6/hAFsRv4J2bdTs5SxwEYbiYU1teGHuUQHO
iQsZCdNTJgcikga9JYKWcBjFEnAxKycNsmqsq4AJ0CEyZbo//IYX3czEQtYWHjp7
FJOlPPd1idKtFMVNG6LGXEwS/TPElE+grYOxwB7Anx3iC5ZpE5lo5tTioFTHzqbT
qTN7rbFZRytAPk/JXMTLgO55fldm4JZTP3GQsPzwIh4wNNKhi4yWG1o2u3hAnZDv
UVFV7al2zFdOfuu0KMzuLzrWrK16SPadRDd9eT17AgMBAAGjUDBOMB0GA1UdDgQW
BBQrr48jv4FxdKs3r0BkmJO7zH4ALzAfBgNVHSMEGDAWgBQrr48jv4FxdKs3r0Bk
mJO7zH4ALzAMBgNVHRMEBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQDRSjXnBc3T
d9VmtTCuALXrQELY8KtM+cXYYNgtodHsxmrRMpJofsPGiqPfb82klvswpXxPK8Xx
SuUUo74Fo+AEyJxMrRKlbJvlEtnpSilKmG6rO9+bFq3nbeOAfat4lPl0DIscWUx3
ajXtvMCcSwTlF8rPgXbOaSXZidRYNqSyUjC2Q4m93Cv+KlyB+FgOke8x4aKAkf5p
XR8i1BN1OiMTIRYhGSfeZbVRq5kTdvtahiWFZu9DGO+hxDZObYGIxGHWPftrhBKz
RT16Amn780rQLWojr70q7o7QP5tO0wDPfCdFSc6CQFq/ngOzYag0kJ2F+O5U6+kS
QVrcRBDxzx/G
-----END CERTIFICATE-----
`

// RootCAs returns a new pool holding RootCAPEM, for verifying port 8883.
func RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(RootCAPEM)) {
		panic("tencent: RootCAPEM does not parse")
	}
	return pool
}

// Transport is a way to reach IoT Hub's MQTT service.
type Transport string

// Transports (IoT Hub: 设备基于 TCP 的 MQTT 接入; 设备基于 WebSocket 的 MQTT 接入).
const (
	TCP Transport = "tcp" // MQTT over TCP, port 1883
	TLS Transport = "tls" // MQTT over TLS, port 8883, verified against RootCAPEM
	WS  Transport = "ws"  // MQTT over WebSocket, port 80, path /mqtt
	WSS Transport = "wss" // MQTT over WebSocket over TLS, port 443, verified against the system roots
)

// URL returns the broker URL of d's MQTT endpoint over transport, for
// netx.URL: "tcp://{pid}.iotcloud.tencentdevices.com:1883",
// "mqtts://…:8883", "ws://{pid}.ap-guangzhou.iothub.tencentdevices.com/mqtt"
// (port 80) or "wss://…/mqtt" (port 443) for the China region (see
// MQTTHost, WebSocketHost).
func (d *DeviceInfo) URL(transport Transport) (string, error) {
	switch transport {
	case TCP:
		return "tcp://" + d.MQTTAddr(false), nil
	case TLS:
		return "mqtts://" + d.MQTTAddr(true), nil
	case WS:
		return d.WebSocketURL(false), nil
	case WSS:
		return d.WebSocketURL(true), nil
	}
	return "", fmt.Errorf("tencent: unknown transport %q (want tcp, tls, ws or wss)", transport)
}

// Dialer returns the netx.Dialer for d's MQTT endpoint over transport. For
// TLS it trusts RootCAPEM unless opts gives a CA (CAFile or
// TLSConfig.RootCAs); WSS uses the system roots unless opts says
// otherwise. opts (nil means zero) is copied; its other fields (proxy,
// WebSocket headers) apply as in netx.URL.
func (d *DeviceInfo) Dialer(transport Transport, opts *netx.Options) (netx.Dialer, error) {
	u, err := d.URL(transport)
	if err != nil {
		return nil, err
	}
	var o netx.Options
	if opts != nil {
		o = *opts
	}
	if transport == TLS && o.CAFile == "" && (o.TLSConfig == nil || o.TLSConfig.RootCAs == nil) {
		cfg := o.TLSConfig.Clone()
		if cfg == nil {
			cfg = new(tls.Config)
		}
		cfg.RootCAs = RootCAs()
		o.TLSConfig = cfg
	}
	return netx.URL(u, &o)
}
