package hubsim

import (
	"strings"
	"sync"

	"github.com/devicemq/mqtt/tencent"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connackBadUsernameOrPassword is CONNACK return code 4 of MQTT 3.1 and
// 3.1.1 (spec 3.2.2.3).
const connackBadUsernameOrPassword = 0x04

// hook adapts the mochi broker (v2.7.9) to IoT Hub's behaviour. Quirks of
// mochi it works around:
//
//  1. When OnConnectAuthenticate refuses a client, mochi sends reason code
//     0x86 (bad user name or password), which it maps to return code 5
//     (not authorised) for MQTT 3.x clients (packets.V5CodesToV3). IoT Hub
//     answers a bad or expired signature with 4 (bad user name or
//     password), so OnPacketEncode rewrites that CONNACK to 4 for the
//     clients OnConnectAuthenticate refused.
//  2. processPublish silently drops any PUBLISH whose topic starts with
//     "$SYS" (case-insensitive), before ACL checks and without a PUBACK,
//     which covers IoT Hub's "$sys/operation/..." topics. OnPacketRead
//     therefore moves such topics under a private prefix
//     ("hubsim/<random>/$sys/...") that mochi handles normally: the ACL
//     allows only the device's own operation topic there, OnPublish marks
//     it CodeSuccessIgnore (acknowledged, forwarded to nobody) and
//     OnPublished answers it. The inline client's Publish is exempt from
//     the "$SYS" check, so replies go out on the real result topic.
//
// mochi also sends DISCONNECT to MQTT 3.x clients (on shutdown, session
// takeover and refused QoS 1 publishes), a packet 3.1.1 lets only clients
// send; package internal/broker suppresses it, so the connection just
// closes, as with IoT Hub.
type hook struct {
	mqtt.HookBase
	hub *Hub

	// refused holds the *mqtt.Client values OnConnectAuthenticate refused
	// whose CONNACK has not been encoded yet.
	refused sync.Map
}

func (k *hook) ID() string { return "hubsim" }

func (k *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketRead,
		mqtt.OnPacketEncode, mqtt.OnPublish, mqtt.OnPublished:
		return true
	}
	return false
}

// OnConnectAuthenticate accepts only the device, correctly signed.
func (k *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	h := k.hub
	err := h.dev.VerifyCredentials(tencent.Credentials{
		ClientID: pk.Connect.ClientIdentifier,
		Username: string(pk.Connect.Username),
		Password: pk.Connect.Password,
	}, h.now())
	if err != nil {
		k.refused.Store(cl, struct{}{})
		h.refused.Add(1)
		h.log.Info("hubsim: connection refused", "client_id", pk.Connect.ClientIdentifier,
			"username", string(pk.Connect.Username), "remote", cl.Net.Remote, "listener", cl.Net.Listener, "error", err)
		return false
	}
	h.accepted.Add(1)
	h.log.Info("hubsim: connection accepted", "client_id", pk.Connect.ClientIdentifier,
		"remote", cl.Net.Remote, "listener", cl.Net.Listener, "protocol_version", pk.ProtocolVersion)
	return true
}

// OnACLCheck allows the device's own topics. For publishes, topic is
// already rewritten by OnPacketRead.
func (k *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	h := k.hub
	if strings.HasPrefix(topic, h.customPrefix) {
		return true
	}
	if write {
		return topic == h.privatePrefix+h.opTopic
	}
	return topic == h.resultTopic
}

// OnPacketRead clears the retain flag of PUBLISH packets (IoT Hub does not
// retain) and moves $SYS-prefixed topics under the private prefix (quirk 2).
func (k *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	pk.FixedHeader.Retain = false
	if len(pk.TopicName) >= len(mqtt.SysPrefix) && strings.EqualFold(pk.TopicName[:len(mqtt.SysPrefix)], mqtt.SysPrefix) {
		pk.TopicName = k.hub.privatePrefix + pk.TopicName
	}
	return pk, nil
}

// OnPacketEncode fixes the CONNACK code of refused clients (quirk 1).
func (k *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.ProtocolVersion >= 5 {
		return pk
	}
	if _, ok := k.refused.LoadAndDelete(cl); ok && pk.ReasonCode == packets.Err3NotAuthorized.Code {
		pk.ReasonCode = connackBadUsernameOrPassword
	}
	return pk
}

// OnPublish keeps operation requests from being forwarded (they are
// answered by OnPublished). QoS 1 requests are still acknowledged.
func (k *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline && pk.TopicName == k.hub.privatePrefix+k.hub.opTopic {
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// OnPublished answers operation requests, after the PUBACK.
func (k *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline && pk.TopicName == k.hub.privatePrefix+k.hub.opTopic {
		k.hub.handleOperation(cl.ID, pk.Payload)
	}
}
