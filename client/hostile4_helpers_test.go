package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// b4conn wraps the client's end of a pipe: writes can be made to fail
// (the network refuses bytes) while reads go on, and a read that fails
// can be held until released.
type b4conn struct {
	net.Conn
	failW   atomic.Bool
	holdR   atomic.Bool
	release chan struct{}
}

func (c *b4conn) Write(p []byte) (int, error) {
	if c.failW.Load() {
		return 0, errors.New("b4: write refused")
	}
	return c.Conn.Write(p)
}

func (c *b4conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.holdR.Load() {
		<-c.release
	}
	return n, err
}

// b4dialer wraps a pipeBroker and remembers its conns.
type b4dialer struct {
	b     *pipeBroker
	mu    sync.Mutex
	conns []*b4conn
}

func (d *b4dialer) Dial(ctx context.Context) (net.Conn, error) {
	c, err := d.b.Dial(ctx)
	if err != nil {
		return nil, err
	}
	w := &b4conn{Conn: c, release: make(chan struct{})}
	d.mu.Lock()
	d.conns = append(d.conns, w)
	d.mu.Unlock()
	return w, nil
}

func (d *b4dialer) last() *b4conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[len(d.conns)-1]
}
