package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// TCP returns a Dialer for a plain TCP connection to addr, a "host:port"
// address as accepted by net.Dial (for example "broker.example:1883" or
// "[::1]:1883").
//
// Dial uses a zero net.Dialer (so the operating system's connect timeout,
// TCP keep-alives and TCP_NODELAY are the standard library defaults) and is
// bounded by ctx only: cancel ctx or give it a deadline to bound it. Errors
// have the form "netx: dial tcp host:port: cause" and wrap the cause; when
// ctx ended the dial, they wrap ctx.Err() too, so errors.Is(err,
// context.Canceled) or errors.Is(err, context.DeadlineExceeded) reports it.
//
// The returned Dialer is safe for concurrent use; the net.Conn it returns
// is the *net.TCPConn itself.
func TCP(addr string) Dialer {
	return tcpDialer{addr: addr}
}

type tcpDialer struct {
	addr string
}

func (d tcpDialer) Dial(ctx context.Context) (net.Conn, error) {
	err := ctx.Err()
	if err != nil {
		return nil, fmt.Errorf("netx: dial tcp %s: %w", d.addr, err)
	}
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, dialError("netx: dial tcp "+d.addr, ctx, err)
	}
	return conn, nil
}

// dialError wraps err under prefix and makes sure that an ended ctx shows in
// the chain even when the failing layer mapped it to an error of its own
// (package net reports a cancelled dial as "operation was canceled").
//
// A *net.OpError from a dial repeats "dial tcp host:port" which prefix
// already says, so only its cause goes into the message; the *net.OpError
// itself stays in the chain for errors.As.
func dialError(prefix string, ctx context.Context, err error) error {
	text := err.Error()
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" && op.Err != nil {
		text = op.Err.Error()
	}
	e := &chainError{msg: prefix + ": " + text, errs: []error{err}}
	ctxErr := ctx.Err()
	if ctxErr != nil && !errors.Is(err, ctxErr) {
		e.msg = prefix + ": " + ctxErr.Error() + " (" + text + ")"
		e.errs = []error{ctxErr, err}
	}
	return e
}

// chainError is an error with its own message that wraps one or more causes.
type chainError struct {
	msg  string
	errs []error
}

func (e *chainError) Error() string   { return e.msg }
func (e *chainError) Unwrap() []error { return e.errs }
