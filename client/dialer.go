package client

import (
	"context"
	"net"
)

// A Dialer opens the byte stream a Client or Session speaks MQTT over: a
// TCP, TLS, WebSocket or any other connection that carries the bytes in
// order (spec 4.2). Every dialer of package netx is one; so is any type
// with this method, which keeps a program that brings its own transport
// from linking netx.
//
// Dial must return once ctx ends, with an error. The client sets read and
// write deadlines on the connection: keep alive runs on the read deadline,
// so a read that times out must leave the stream as it was, and Close
// must unblock a Read under way (the net.Conn contract): the connection's
// reader is what ends it, so calls waiting on a connection whose Read
// outlives Close wait as long. Every net.Conn of the standard library and
// of netx does both.
type Dialer interface {
	Dial(ctx context.Context) (net.Conn, error)
}
