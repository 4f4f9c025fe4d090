package netx

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestTCP(t *testing.T) {
	s := newTestServer(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := TCP(s.addr()).Dial(ctx)
	if err != nil {
		t.Fatalf(
			"Dial: %v",
			err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	_, err = c.Write([]byte{0xC0, 0x00})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	_, err = io.ReadFull(c, got)
	if err != nil || got[0] != 0xC0 || got[1] != 0x00 {
		t.Fatalf(
			"echo = %x, %v",
			got, err)
	}
}

func TestTCPCancelled(t *testing.T) {
	s := newTestServer(t, func(net.Conn) {})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := TCP(s.addr()).Dial(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf(
			"Dial error %v; want context.Canceled",
			err)
	}
	want := "netx: dial tcp " + s.addr() + ": "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf(
			"Dial error %q; want prefix %q",
			err, want)
	}
}

func TestTCPDeadlinePassed(t *testing.T) {
	s := newTestServer(t, func(net.Conn) {})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := TCP(s.addr()).Dial(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf(
			"Dial error %v; want context.DeadlineExceeded",
			err)
	}
}

func TestTCPRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = TCP(addr).Dial(context.Background())
	if err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	want := "netx: dial tcp " + addr + ": connect: "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf(
			"Dial error %q; want prefix %q",
			err, want)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf(
			"Dial error %v; want a *net.OpError in the chain",
			err)
	}
}

func TestDialerFunc(t *testing.T) {
	want := errors.New("sentinel")
	var d Dialer = DialerFunc(func(ctx context.Context) (net.Conn, error) {
		return nil, want
	})
	_, err := d.Dial(context.Background())
	if err != want {
		t.Errorf(
			"Dial error %v; want %v",
			err, want)
	}
}
