package tencent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/packet"
)

// TimeRequestInterval is how long ServerTime waits for a reply before it
// sends the time request again. IoT Hub: 产品限制 says a new subscription
// takes effect within 5 s, so a request sent right after SUBACK may be
// answered to nobody.
const TimeRequestInterval = 2 * time.Second

// timeRequestInterval is TimeRequestInterval; tests shorten it.
var timeRequestInterval = TimeRequestInterval

// MQTT is what ServerTime needs of an MQTT client; *client.Client and
// *client.Session have it.
type MQTT interface {
	Publish(ctx context.Context, m client.Message) error
	Subscribe(ctx context.Context, subs ...client.Subscription) ([]packet.SubackCode, error)
	Unsubscribe(ctx context.Context, filters ...string) error
	Done() <-chan struct{}
	Err() error
}

// ErrNoTimeReply reports that no time reply came before the context ended.
var ErrNoTimeReply = errors.New("tencent: no time reply from IoT Hub")

// ServerTime asks IoT Hub for its time, as IoT Hub: NTP 服务 describes:
// it subscribes to OperationResultTopic (QoS 1), publishes
// TimeRequestPayload to OperationTopic (QoS 0, as the SDKs do, again every
// TimeRequestInterval until a reply comes), waits for the reply,
// unsubscribes, and returns the server's time at the moment the reply
// arrived, estimated as ParseTimeReply does (millisecond precision, from the
// latest request's send time).
//
// Replies of other types on the result topic (such as "ssh") are ignored.
// Errors: an error wrapping ErrNoTimeReply and ctx.Err() when ctx ends
// first (with a client.Session's LastError, such as a refusal, when it has
// one); ErrNoTimeReply and the client's Err when the client ends first (a
// Session stopped by a refusal: errors.As finds the *client.ConnackError);
// the client's errors otherwise (a refused subscription wraps
// client.ErrSubscriptionFailed); ErrInvalidTimeReply for a malformed reply.
// ServerTime may be called concurrently with other uses of c, but not
// concurrently with itself on the same device. Over a client.Session it
// keeps asking across reconnections.
func ServerTime(ctx context.Context, c MQTT, productID, deviceName string) (time.Time, error) {
	type reply struct {
		payload []byte
		at      time.Time
	}
	replies := make(chan reply, 8)
	result := OperationResultTopic(productID, deviceName)
	_, err := c.Subscribe(ctx, client.Subscription{Filter: result, QoS: packet.QoS1, Handler: func(m client.Message) {
		select {
		case replies <- reply{m.Payload, time.Now()}:
		default: // a reply is already waiting; ServerTime needs one
		}
	}})
	if err != nil {
		return time.Time{}, noReply(ctx, c, err)
	}
	defer c.Unsubscribe(context.WithoutCancel(ctx), result)

	request := client.Message{Topic: OperationTopic(productID, deviceName), Payload: []byte(TimeRequestPayload)}
	retry := time.NewTicker(timeRequestInterval)
	defer retry.Stop()
	for {
		sentAt := time.Now()
		if err := c.Publish(ctx, request); err != nil {
			return time.Time{}, noReply(ctx, c, err)
		}
	wait:
		for {
			select {
			case r := <-replies:
				t, err := ParseTimeReply(r.payload, sentAt, r.at)
				if errors.Is(err, ErrNotTimeReply) {
					continue
				}
				if err != nil {
					return time.Time{}, err
				}
				return t, nil
			case <-retry.C:
				break wait
			case <-c.Done():
				return time.Time{}, noReply(ctx, c, c.Err())
			case <-ctx.Done():
				return time.Time{}, noReply(ctx, c, ctx.Err())
			}
		}
	}
}

// noReply is ServerTime's error when err (a call on c, or c's end) stopped
// it before a reply came: it wraps ErrNoTimeReply when the context ended or
// the client did, with why the client ended or, for a client that tells
// it (client.Session.LastError), why its last connection attempt failed,
// so that a refusal (errors.As *client.ConnackError) shows; other errors
// are wrapped as they are.
func noReply(ctx context.Context, c MQTT, err error) error {
	ended := false
	select {
	case <-c.Done():
		ended = true
	default:
	}
	switch {
	case ended && c.Err() != nil:
		return fmt.Errorf("%w: the client ended: %w", ErrNoTimeReply, c.Err())
	case ctx.Err() != nil:
		if l, ok := c.(interface{ LastError() error }); ok && l.LastError() != nil {
			return fmt.Errorf("%w: %w (last connection error: %w)", ErrNoTimeReply, ctx.Err(), l.LastError())
		}
		return fmt.Errorf("%w: %w", ErrNoTimeReply, ctx.Err())
	}
	return fmt.Errorf("tencent: server time: %w", err)
}
