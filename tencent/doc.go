// Package tencent holds what a device needs, beyond plain MQTT 3.1.1, to talk
// to Tencent Cloud IoT Hub (物联网通信, "iothub", *.tencentdevices.com):
//
//   - DeviceInfo: the device_info.json file used by Tencent's device SDKs
//     (LoadDeviceInfo, ParseDeviceInfo, Validate).
//   - Sign: the CONNECT client identifier, user name and HMAC password of a
//     device in key (PSK) mode, and VerifyPassword, the server-side check
//     used by the in-process simulator (package hubsim).
//   - MQTTHost, WebSocketHost, WebSocketURL and the port constants: where
//     each region's broker listens.
//   - OperationTopic, OperationResultTopic, TimeRequestPayload and
//     ParseTimeReply: the platform's NTP (server time) service, and
//     ServerTime, which runs it over a client.Client or client.Session.
//
// Apart from ServerTime, which talks over the client it is given, the
// package does no network I/O; it composes with any MQTT client by filling
// that client's CONNECT fields. It imports the standard library and this
// module's client and packet packages.
//
// # Sources
//
// Protocol facts come from the IoT Hub documentation (物联云 IoT Hub 开发者手册,
// cloud.tencent.com/document/product/634, mirrored in
// github.com/tencentyun/qcloud-documents) and Tencent's device SDKs; each
// identifier's doc comment names the page it follows. The main pages are:
//
//   - IoT Hub: 设备基于 TCP 的 MQTT 接入 (MQTT over TCP: client id, user name,
//     password, ports);
//   - IoT Hub: 设备基于 WebSocket 的 MQTT 接入 (MQTT over WebSocket);
//   - IoT Hub: 设备接入地域说明 (region host names);
//   - IoT Hub: NTP 服务 (the server time topics);
//   - IoT Hub: 产品限制 (limits).
//
// Nothing here was tested against the live service.
//
// # Units
//
// Times are time.Time values. On the wire the signature expiry and the
// "time" field of a time reply are Unix seconds; "ntptime1"/"ntptime2" are
// Unix milliseconds. Lengths are in bytes unless stated otherwise.
//
// # Concurrency
//
// All functions are safe for concurrent use. A DeviceInfo is a plain value:
// do not modify it while another goroutine uses it.
package tencent
