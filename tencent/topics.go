package tencent

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// OperationTopic returns "$sys/operation/{productID}/{deviceName}", the
// topic a device publishes system requests to, such as TimeRequestPayload.
//
// Source: IoT Hub: NTP 服务.
func OperationTopic(productID, deviceName string) string {
	return "$sys/operation/" + productID + "/" + deviceName
}

// OperationResultTopic returns
// "$sys/operation/result/{productID}/{deviceName}", the topic a device
// subscribes to for replies to its system requests (see TimeReply).
//
// Source: IoT Hub: NTP 服务.
func OperationResultTopic(productID, deviceName string) string {
	return "$sys/operation/result/" + productID + "/" + deviceName
}

// OperationTopic returns OperationTopic(d.ProductID, d.DeviceName).
func (d *DeviceInfo) OperationTopic() string {
	return OperationTopic(d.ProductID, d.DeviceName)
}

// OperationResultTopic returns OperationResultTopic(d.ProductID,
// d.DeviceName).
func (d *DeviceInfo) OperationResultTopic() string {
	return OperationResultTopic(d.ProductID, d.DeviceName)
}

// TimeRequestPayload is the request a device publishes to OperationTopic
// to ask for the server time; the reply (a TimeReply) arrives on
// OperationResultTopic. The SDKs publish it with QoS 0.
//
// Source: IoT Hub: NTP 服务.
const TimeRequestPayload = `{"type":"get","resource":["time"]}`

// TimeReply is the JSON reply to TimeRequestPayload:
//
//	{"type":"get","time":1700000000,"ntptime1":1700000000123,"ntptime2":1700000000125}
//
// Source: IoT Hub: NTP 服务; the C SDK (sdk_src/services/system/system_mqtt.c)
// accepts replies without the ntptime fields.
type TimeReply struct {
	// Type is "get" for a time reply. The same topic carries other
	// messages, such as {"type":"ssh",...}.
	Type string `json:"type"`

	// Time is the server time in Unix seconds.
	Time int64 `json:"time"`

	// NTPTime1 is when the server received the request, in Unix
	// milliseconds; 0 if absent.
	NTPTime1 int64 `json:"ntptime1"`

	// NTPTime2 is when the server sent the reply, in Unix milliseconds; 0
	// if absent.
	NTPTime2 int64 `json:"ntptime2"`
}

// Errors reported by ParseTimeReply; returned errors wrap one of them.
var (
	// ErrInvalidTimeReply: the payload is not JSON, has fields of the
	// wrong type, or is a "get" reply without a usable time.
	ErrInvalidTimeReply = errors.New("tencent: invalid time reply")

	// ErrNotTimeReply: the payload is JSON but its "type" is not "get"; it
	// is another message on OperationResultTopic. Callers waiting for the
	// time should ignore it and keep waiting.
	ErrNotTimeReply = errors.New("tencent: not a time reply")
)

// maxUnixMilli bounds the ntptime fields: 9999-12-31T23:59:59.999Z.
const maxUnixMilli = 253402300799999

// ParseTimeReply decodes a payload received on OperationResultTopic and
// returns the estimated current server time.
//
// sentAt is when the device published TimeRequestPayload and receivedAt
// when the reply arrived, both read from the local clock (values from
// time.Now keep their monotonic reading, which makes the round trip immune
// to wall-clock jumps). If both ntptime fields are present, the result is
// the NTP-style estimate of IoT Hub: NTP 服务, in milliseconds:
//
//	(ntptime1 + ntptime2 + receivedAt_ms - sentAt_ms) / 2
//
// computed without rounding the round trip to whole milliseconds; this is
// the server time at receivedAt. Otherwise it is time * 1000 ms, as in the
// C SDK.
//
// Errors: ErrNotTimeReply if "type" is not "get"; ErrInvalidTimeReply for
// malformed JSON, a missing or non-positive "time" without ntptime fields,
// ntptime values outside year 1970-9999 or more than 30 years apart; an
// error if receivedAt is before sentAt or over 100 years after it.
func ParseTimeReply(payload []byte, sentAt, receivedAt time.Time) (time.Time, error) {
	var r TimeReply
	if err := json.Unmarshal(payload, &r); err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrInvalidTimeReply, err)
	}
	if r.Type != "get" {
		return time.Time{}, fmt.Errorf("%w: type %q", ErrNotTimeReply, r.Type)
	}
	if r.NTPTime1 == 0 || r.NTPTime2 == 0 {
		if r.Time <= 0 {
			return time.Time{}, fmt.Errorf("%w: no ntptime1/ntptime2 and no positive time", ErrInvalidTimeReply)
		}
		return time.Unix(r.Time, 0), nil
	}

	if r.NTPTime1 < 0 || r.NTPTime1 > maxUnixMilli || r.NTPTime2 < 0 || r.NTPTime2 > maxUnixMilli {
		return time.Time{}, fmt.Errorf("%w: ntptime1 %d or ntptime2 %d out of range", ErrInvalidTimeReply, r.NTPTime1, r.NTPTime2)
	}
	const maxSpread = 30 * 365 * 24 * 3600 * 1000 // ms; keeps the Duration below from overflowing
	if spread := r.NTPTime2 - r.NTPTime1; spread > maxSpread || spread < -maxSpread {
		return time.Time{}, fmt.Errorf("%w: ntptime1 %d and ntptime2 %d are too far apart", ErrInvalidTimeReply, r.NTPTime1, r.NTPTime2)
	}
	rtt := receivedAt.Sub(sentAt)
	if rtt < 0 {
		return time.Time{}, errors.New("tencent: time reply: receivedAt is before sentAt")
	}
	if rtt > 100*365*24*time.Hour {
		return time.Time{}, errors.New("tencent: time reply: receivedAt is over 100 years after sentAt")
	}
	// (t1 + t2 + rtt)/2 == t1 + (t2 - t1 + rtt)/2, which cannot overflow.
	return time.UnixMilli(r.NTPTime1).Add((time.Duration(r.NTPTime2-r.NTPTime1)*time.Millisecond + rtt) / 2), nil
}
