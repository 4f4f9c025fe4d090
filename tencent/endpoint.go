package tencent

import (
	"net"
	"strconv"
)

// Region is an IoT Hub access region, the "region" field of
// device_info.json. It selects the broker host names.
//
// Source: IoT Hub: 设备接入地域说明, and the region table of the C device SDK
// (sdk_src/utils/qcloud_iot_ca.c).
type Region string

const (
	// RegionChina is Guangzhou, the default region (also used for an empty
	// Region).
	RegionChina Region = "china"

	// RegionUSEast is Virginia.
	RegionUSEast Region = "us-east"

	// RegionEurope is Frankfurt.
	RegionEurope Region = "europe"

	// RegionBangkok is Bangkok.
	RegionBangkok Region = "ap-bangkok"
)

// Valid reports whether r is one of the Region constants or empty (which
// means RegionChina).
func (r Region) Valid() bool {
	switch r {
	case "", RegionChina, RegionUSEast, RegionEurope, RegionBangkok:
		return true
	}
	return false
}

// TCP ports of the brokers. Source: IoT Hub: 设备基于 TCP 的 MQTT 接入 and
// IoT Hub: 设备基于 WebSocket 的 MQTT 接入.
const (
	// MQTTPort is MQTT over plain TCP (key devices).
	MQTTPort = 1883

	// MQTTTLSPort is MQTT over TLS. The server certificate chains to
	// Tencent's own IoT Hub root CA, not to a public CA.
	MQTTTLSPort = 8883

	// WebSocketPort is MQTT over plain WebSocket (ws://).
	WebSocketPort = 80

	// WebSocketTLSPort is MQTT over WebSocket over TLS (wss://), with a
	// public Web PKI certificate.
	WebSocketTLSPort = 443
)

// WebSocket handshake parameters. Source: IoT Hub: 设备基于 WebSocket 的
// MQTT 接入; the C SDK requests "/" and the Python SDK "/mqtt", and both
// connect.
const (
	// WebSocketPath is the request path WebSocketURL uses.
	WebSocketPath = "/mqtt"

	// WebSocketSubprotocol is the Sec-WebSocket-Protocol value to offer.
	WebSocketSubprotocol = "mqtt"
)

// MQTTHost returns the host name of the MQTT broker (TCP port MQTTPort, TLS
// port MQTTTLSPort) for a product in a region:
//
//	china       <pid>.iotcloud.tencentdevices.com
//	us-east     <pid>.us-east.iotcloud.tencentdevices.com
//	europe      <pid>.europe.iothub.tencentdevices.com
//	ap-bangkok  <pid>.ap-bangkok.iothub.tencentdevices.com
//
// An empty or unknown region gives the china host, as in the C SDK; use
// Region.Valid to reject unknown regions.
//
// Source: IoT Hub: 设备接入地域说明 (whose us-east row lacks the dot after the
// product ID, a typo per the C SDK).
func MQTTHost(productID string, region Region) string {
	switch region {
	case RegionUSEast:
		return productID + ".us-east.iotcloud.tencentdevices.com"
	case RegionEurope:
		return productID + ".europe.iothub.tencentdevices.com"
	case RegionBangkok:
		return productID + ".ap-bangkok.iothub.tencentdevices.com"
	}
	return productID + ".iotcloud.tencentdevices.com"
}

// WebSocketHost returns the host name of the MQTT-over-WebSocket endpoint
// (ports WebSocketPort and WebSocketTLSPort) for a product in a region:
//
//	china       <pid>.ap-guangzhou.iothub.tencentdevices.com
//	us-east     <pid>.us-east.iothub.tencentdevices.com
//	europe      <pid>.europe.iothub.tencentdevices.com
//	ap-bangkok  <pid>.ap-bangkok.iothub.tencentdevices.com
//
// An empty or unknown region gives the china host.
//
// Source: IoT Hub: 设备基于 WebSocket 的 MQTT 接入, and the C SDK
// (QCLOUD_IOT_WEBSOCKET_MQTT_*_DOMAIN) for the other regions.
func WebSocketHost(productID string, region Region) string {
	switch region {
	case RegionUSEast:
		return productID + ".us-east.iothub.tencentdevices.com"
	case RegionEurope:
		return productID + ".europe.iothub.tencentdevices.com"
	case RegionBangkok:
		return productID + ".ap-bangkok.iothub.tencentdevices.com"
	}
	return productID + ".ap-guangzhou.iothub.tencentdevices.com"
}

// WebSocketURL returns the URL of the MQTT-over-WebSocket endpoint:
// "wss://<WebSocketHost>/mqtt" if secure (port 443), else
// "ws://<WebSocketHost>/mqtt" (port 80). The default port is left implicit.
// Offer the subprotocol WebSocketSubprotocol and send MQTT in binary frames.
//
// Source: IoT Hub: 设备基于 WebSocket 的 MQTT 接入.
func WebSocketURL(productID string, region Region, secure bool) string {
	scheme := "ws://"
	if secure {
		scheme = "wss://"
	}
	return scheme + WebSocketHost(productID, region) + WebSocketPath
}

// MQTTHost returns MQTTHost(d.ProductID, d.Region).
func (d *DeviceInfo) MQTTHost() string {
	return MQTTHost(d.ProductID, d.Region)
}

// MQTTAddr returns the "host:port" to dial for MQTT over TCP: MQTTHost with
// MQTTTLSPort if tls, else with MQTTPort.
func (d *DeviceInfo) MQTTAddr(tls bool) string {
	port := MQTTPort
	if tls {
		port = MQTTTLSPort
	}
	return net.JoinHostPort(d.MQTTHost(), strconv.Itoa(port))
}

// WebSocketHost returns WebSocketHost(d.ProductID, d.Region).
func (d *DeviceInfo) WebSocketHost() string {
	return WebSocketHost(d.ProductID, d.Region)
}

// WebSocketURL returns WebSocketURL(d.ProductID, d.Region, secure).
func (d *DeviceInfo) WebSocketURL(secure bool) string {
	return WebSocketURL(d.ProductID, d.Region, secure)
}
