// Package hubsim runs an in-process stand-in for Tencent Cloud IoT Hub, for
// demos and tests that must not depend on the real service. It serves one
// key-mode device over MQTT on TCP and on WebSocket, and with Options.TLS
// also on TLS and WebSocket over TLS, on 127.0.0.1 ports chosen by the
// kernel. It is built on the mochi-mqtt broker
// (github.com/mochi-mqtt/server/v2), run by package internal/broker.
//
// What it simulates, after IoT Hub: 设备基于 TCP 的 MQTT 接入 and IoT Hub:
// NTP 服务 (see package tencent for the protocol facts):
//
//   - Authentication: CONNECT is accepted only with client identifier
//     product ID + device name and a user name/password signed with the
//     device secret (tencent.DeviceInfo.VerifyCredentials), unexpired at
//     Options.Now. Otherwise the CONNACK return code is 4 (bad user name or
//     password) for MQTT 3.1 and 3.1.1 clients, the code IoT Hub is known to
//     use for bad or expired signatures. MQTT 5 clients get reason code
//     0x86, the MQTT 5 equivalent.
//   - Authorisation: the device may subscribe to
//     $sys/operation/result/{pid}/{dn} and to filters under {pid}/{dn}/, and
//     publish to $sys/operation/{pid}/{dn} and to topics under {pid}/{dn}/.
//     A denied SUBSCRIBE gets return code 0x80; a denied PUBLISH is dropped
//     at QoS 0 and ends the connection at QoS 1 (IoT Hub's reaction is not
//     documented).
//   - Time service: a PUBLISH (QoS 0 or 1) of
//     {"type":"get","resource":["time"]} to $sys/operation/{pid}/{dn} is
//     answered on $sys/operation/result/{pid}/{dn} with
//     {"type":"get","time":<s>,"ntptime1":<ms>,"ntptime2":<ms>} taken from
//     Options.Now. For QoS 1 the PUBACK is written before the reply.
//   - Retain flags on PUBLISH are cleared (IoT Hub does not support
//     retained messages). The broker's maximum QoS is 1 (IoT Hub has no
//     QoS 2): SUBSCRIBE at QoS 2 is granted QoS 1, and a QoS 2 PUBLISH is
//     handled as QoS 1 and answered with PUBACK (the broker's behaviour;
//     IoT Hub's is not documented). Likewise a CONNECT with a QoS 2 will
//     gets the broker's MQTT 5 code 0x9B, which is not a 3.1.1 code.
//
// Not simulated: Tencent's server certificates (with Options.TLS the hub
// presents the caller's certificate, and asks for no client certificate
// unless that tls.Config does), certificate devices, the keep-alive limit
// (0-900 s), rate and size limits, the other system topics ($shadow, $ota,
// $rrpc, ...) and every other device.
package hubsim

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemq/mqtt/internal/broker"
	"github.com/devicemq/mqtt/tencent"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// Options configure a Hub. A nil *Options means all defaults.
type Options struct {
	// Logger receives the hub's events (connections accepted and refused,
	// time requests) at Info and Debug level, the embedded broker's
	// warnings and errors, and connection ends and failed handshakes at
	// Debug level. Nil discards everything.
	Logger *slog.Logger

	// Now is the hub's clock: it decides whether a signature has expired
	// and fills the time replies. Nil means time.Now.
	Now func() time.Time

	// TCPAddr is the address of the MQTT-over-TCP listener. Empty means
	// "127.0.0.1:0" (a free port).
	TCPAddr string

	// WebSocketAddr is the address of the MQTT-over-WebSocket listener.
	// Empty means "127.0.0.1:0" (a free port).
	WebSocketAddr string

	// TLS, if set, holds the server certificate the hub presents: the hub
	// then also serves MQTT over TLS and over WebSocket over TLS, on
	// 127.0.0.1 ports chosen by the kernel (Hub.TLSAddr, Hub.WSSURL). The
	// device still authenticates with its signed user name and password.
	TLS *tls.Config
}

// Stats counts what a Hub has done since Start.
type Stats struct {
	Accepted     int64 // CONNECTs accepted
	Refused      int64 // CONNECTs refused by authentication
	TimeRequests int64 // time requests answered
}

// Hub is a running IoT Hub simulator. Its methods are safe for concurrent
// use.
type Hub struct {
	dev tencent.DeviceInfo
	now func() time.Time
	log *slog.Logger
	srv *broker.Server

	// ready is closed once srv is set: a device may connect and publish
	// before broker.Start has returned.
	ready chan struct{}

	opTopic       string // $sys/operation/{pid}/{dn}
	resultTopic   string // $sys/operation/result/{pid}/{dn}
	privatePrefix string // hubsim/<random>/ ; see hook.OnPacketRead
	customPrefix  string // {pid}/{dn}/

	accepted     atomic.Int64
	refused      atomic.Int64
	timeRequests atomic.Int64

	closed    atomic.Bool
	closeOnce sync.Once
}

// Start validates dev (tencent.DeviceInfo.Validate; key mode only), opens
// the TCP and WebSocket listeners (and the TLS and WSS ones with
// Options.TLS) and starts serving. Call Close when done.
func Start(dev tencent.DeviceInfo, opts *Options) (*Hub, error) {
	if err := dev.Validate(); err != nil {
		return nil, fmt.Errorf("hubsim: %w", err)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TCPAddr == "" {
		o.TCPAddr = "127.0.0.1:0"
	}
	if o.WebSocketAddr == "" {
		o.WebSocketAddr = "127.0.0.1:0"
	}

	var token [8]byte
	rand.Read(token[:])
	dev.SubDevices = slices.Clone(dev.SubDevices)
	h := &Hub{
		dev:           dev,
		now:           o.Now,
		log:           o.Logger,
		opTopic:       tencent.OperationTopic(dev.ProductID, dev.DeviceName),
		resultTopic:   tencent.OperationResultTopic(dev.ProductID, dev.DeviceName),
		privatePrefix: "hubsim/" + hex.EncodeToString(token[:]) + "/",
		customPrefix:  dev.ProductID + "/" + dev.DeviceName + "/",
		ready:         make(chan struct{}),
	}

	// The hook authenticates and authorises (so the broker adds no
	// allow-all hook); the broker drops DISCONNECT to 3.x clients.
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1 // IoT Hub: QoS 0 and 1 only
	srv, err := broker.Start(&broker.Options{
		Logger:        h.log,
		TLS:           o.TLS,
		Hooks:         []mqtt.Hook{&hook{hub: h}},
		InlineClient:  true, // h.srv.Mochi().Publish sends the time replies
		Capabilities:  caps,
		TCPAddr:       o.TCPAddr,
		WebSocketAddr: o.WebSocketAddr,
	})
	if err != nil {
		return nil, fmt.Errorf("hubsim: %w", err)
	}
	h.srv = srv
	close(h.ready)
	h.log.Info("hubsim: started", "client_id", dev.ClientID(), "tcp", h.TCPAddr(), "websocket", h.WebSocketURL(),
		"tls", h.TLSAddr(), "wss", h.WSSURL())
	return h, nil
}

// TCPAddr returns the "host:port" of the MQTT-over-TCP listener, e.g.
// "127.0.0.1:41234".
func (h *Hub) TCPAddr() string {
	return h.srv.TCPAddr()
}

// WebSocketURL returns the URL of the MQTT-over-WebSocket listener, e.g.
// "ws://127.0.0.1:41235/mqtt". The listener accepts any request path and
// selects the subprotocol "mqtt" (or "mqttv3.1") when the client offers it;
// MQTT travels in binary frames.
func (h *Hub) WebSocketURL() string {
	return h.srv.WebSocketURL()
}

// TLSAddr returns the "host:port" of the MQTT-over-TLS listener, e.g.
// "127.0.0.1:41236", or "" without Options.TLS.
func (h *Hub) TLSAddr() string {
	return h.srv.TLSAddr()
}

// WSSURL returns the URL of the MQTT-over-WebSocket-over-TLS listener,
// e.g. "wss://127.0.0.1:41237/mqtt", or "" without Options.TLS. It serves
// as WebSocketURL does.
func (h *Hub) WSSURL() string {
	return h.srv.WSSURL()
}

// Device returns the device the hub serves.
func (h *Hub) Device() tencent.DeviceInfo {
	d := h.dev
	d.SubDevices = slices.Clone(d.SubDevices)
	return d
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Accepted:     h.accepted.Load(),
		Refused:      h.refused.Load(),
		TimeRequests: h.timeRequests.Load(),
	}
}

// Publish sends a message to the device's matching subscriptions as the
// platform would (e.g. to "{pid}/{dn}/control"), bypassing authorisation.
// qos (0 or 1) is the highest QoS it is delivered with; the subscription's
// QoS may lower it. It returns net.ErrClosed after Close.
func (h *Hub) Publish(topic string, payload []byte, qos byte) error {
	if h.closed.Load() {
		return fmt.Errorf("hubsim: publish: %w", net.ErrClosed)
	}
	if qos > 1 {
		return errors.New("hubsim: publish: qos must be 0 or 1")
	}
	if err := h.srv.Mochi().Publish(topic, payload, false, qos); err != nil {
		return fmt.Errorf("hubsim: publish: %w", err)
	}
	return nil
}

// Close stops the hub: it closes the listeners and every connection
// (clients see the connection close; no DISCONNECT is sent) and waits for
// the goroutines that accept and serve connections. A few goroutines of the
// embedded broker (its housekeeping loop and the per-client writers) have
// been told to stop by then and exit asynchronously right after. Close is
// idempotent and always returns nil.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		h.closed.Store(true)
		h.srv.Close()
		h.log.Info("hubsim: stopped")
	})
	return nil
}

// handleOperation answers a message the device published to its
// $sys/operation topic. It runs in the broker's OnPublished hook, on the
// device's read goroutine, after the PUBACK (QoS 1) has been written.
// Publishing from there is safe: the broker holds no lock while calling
// hooks, and the reply is queued on the device's outbound channel.
func (h *Hub) handleOperation(clientID string, payload []byte) {
	received := h.now()
	var req struct {
		Type     string   `json:"type"`
		Resource []string `json:"resource"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		h.log.Debug("hubsim: ignoring malformed $sys/operation request", "client_id", clientID, "error", err)
		return
	}
	if req.Type != "get" || !slices.Contains(req.Resource, "time") {
		h.log.Debug("hubsim: ignoring unsupported $sys/operation request", "client_id", clientID, "payload", string(payload))
		return
	}
	sent := h.now()
	reply, err := json.Marshal(tencent.TimeReply{
		Type:     "get",
		Time:     sent.Unix(),
		NTPTime1: received.UnixMilli(),
		NTPTime2: sent.UnixMilli(),
	})
	if err != nil {
		return // cannot happen
	}
	// QoS 1 at most: the device's subscription QoS decides.
	<-h.ready
	// Counted first: the device may read Stats as soon as it has the reply.
	h.timeRequests.Add(1)
	if err := h.srv.Mochi().Publish(h.resultTopic, reply, false, 1); err != nil {
		h.timeRequests.Add(-1)
		h.log.Warn("hubsim: time reply not sent", "client_id", clientID, "error", err)
		return
	}
	h.log.Debug("hubsim: time request answered", "client_id", clientID, "reply", string(reply))
}
