package client

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"github.com/devicemq/mqtt/packet"
)

func (cn *conn) debug() bool { return cn.c.cfg.log.Enabled(context.Background(), slog.LevelDebug) }

// logPacket writes one Debug record for a control packet sent or received:
// its type, flags, packet identifier, topic and payload size. It never logs
// a password or a payload's content.
func (cn *conn) logPacket(dir string, p packet.Packet) {
	if !cn.debug() {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("packet", p.Type().String()))
	switch p := p.(type) {
	case *packet.Connect:
		level := p.ProtocolLevel
		if level == 0 {
			level = packet.Level311
		}
		attrs = append(attrs,
			slog.String("client_id", string(p.ClientID)),
			slog.Int("protocol_level", int(level)),
			slog.Bool("clean_session", p.CleanSession),
			slog.Int("keep_alive_s", int(p.KeepAlive)),
			slog.Bool("username_flag", p.UsernameFlag),
			slog.Bool("password_flag", p.PasswordFlag),
			slog.Bool("will_flag", p.WillFlag))
		if p.WillFlag {
			attrs = append(attrs, slog.String("will_topic", string(p.WillTopic)), slog.Int("will_qos", int(p.WillQoS)), slog.Bool("will_retain", p.WillRetain))
		}
	case *packet.Connack:
		attrs = append(attrs,
			slog.Bool("session_present", p.SessionPresent),
			slog.Int("return_code", int(p.ReturnCode)),
			slog.String("meaning", p.ReturnCode.String()))
	case *packet.Publish:
		attrs = append(attrs, slog.Int("qos", int(p.QoS)), slog.Bool("dup", p.DUP), slog.Bool("retain", p.Retain))
		if p.QoS > 0 {
			attrs = append(attrs, slog.Int("id", int(p.PacketID)))
		}
		attrs = append(attrs, slog.String("topic", string(p.Topic)), slog.Int("payload_bytes", len(p.Payload)))
	case *packet.Subscribe:
		var b strings.Builder
		for i, s := range p.Subscriptions {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.Write(s.Filter)
			b.WriteString(" qos=")
			b.WriteString(strconv.Itoa(int(s.QoS)))
		}
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("filters", b.String()))
	case *packet.Suback:
		var b strings.Builder
		for i, code := range p.ReturnCodes {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString("0x" + strconv.FormatUint(uint64(code), 16))
		}
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("return_codes", b.String()))
	case *packet.Unsubscribe:
		fs := make([]string, len(p.Filters))
		for i, f := range p.Filters {
			fs[i] = string(f)
		}
		attrs = append(attrs, slog.Int("id", int(p.PacketID)), slog.String("filters", strings.Join(fs, " ")))
	case *packet.Puback:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)))
	case *packet.Pubrec:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)))
	case *packet.Pubrel:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)))
	case *packet.Pubcomp:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)))
	case *packet.Unsuback:
		attrs = append(attrs, slog.Int("id", int(p.PacketID)))
	}
	cn.c.cfg.log.LogAttrs(context.Background(), slog.LevelDebug, "mqtt "+dir, attrs...)
}

// newAck returns a new acknowledgement packet of type t, for the log.
func newAck(t packet.Type, id uint16) packet.Packet {
	switch t {
	case packet.PUBACK:
		return &packet.Puback{PacketID: id}
	case packet.PUBREC:
		return &packet.Pubrec{PacketID: id}
	case packet.PUBREL:
		return &packet.Pubrel{PacketID: id}
	default:
		return &packet.Pubcomp{PacketID: id}
	}
}
