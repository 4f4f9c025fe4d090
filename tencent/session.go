package tencent

import (
	"context"
	"time"

	"github.com/devicemq/mqtt/client"
)

// IoT Hub's limits that a client must keep (IoT Hub: 产品限制).
const (
	// MaxPacketSize is the largest PUBLISH IoT Hub accepts, 16 KB.
	MaxPacketSize = 16 << 10
	// MinReconnectInterval is the shortest time between two CONNECTs of a
	// device that IoT Hub accepts.
	MinReconnectInterval = 5 * time.Second
	// MaxKeepAlive is the longest keep alive IoT Hub accepts.
	MaxKeepAlive = 900 * time.Second
	// DefaultKeepAlive is the keep alive of Tencent's C SDK.
	DefaultKeepAlive = 240 * time.Second
)

// SessionOptions returns client.SessionOptions for device d: client
// identifier {productId}{deviceName}, a user name and password signed anew
// with sign (nil means defaults: HMAC-SHA256, valid for an hour) for every
// connection attempt, clean session, keep alive DefaultKeepAlive, at most
// MaxPacketSize bytes per packet, and at least MinReconnectInterval between
// attempts: the first is made at once, later ones wait between
// MinReconnectInterval and the backoff's cap (120 s). A refused signature
// (CONNACK 4 or 5) stops the Session, as client.SessionOptions.RetryRefused
// describes; set RetryRefused (at least MinReconnectInterval) to retry. Adjust
// the result before passing it to client.NewSession.
func (d *DeviceInfo) SessionOptions(sign *SignOptions) client.SessionOptions {
	dev := *d
	return client.SessionOptions{
		Options: client.Options{
			ClientID:      dev.ClientID(),
			KeepAlive:     DefaultKeepAlive,
			MaxPacketSize: MaxPacketSize,
		},
		Credentials: func(context.Context) (string, []byte, error) {
			c, err := dev.Sign(sign)
			return c.Username, c.Password, err
		},
		MinBackoff: 2 * MinReconnectInterval,
		MaxBackoff: 120 * time.Second,
	}
}
