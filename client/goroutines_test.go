package client

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
)

// TestGoroutines: a Client runs three goroutines (reader, writer,
// dispatcher), a Session four (those and its supervisor), and none are
// left after Close.
func TestGoroutines(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := ctxT(t, 10*time.Second)
	settle := func() int {
		time.Sleep(50 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()
	c, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "g1", CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := settle() - before; n != 3 {
		t.Errorf("a Client runs %d goroutines, want 3", n)
	}
	c.Close()
	<-c.Done()
	s, err := NewSession(netx.TCP(b.TCPAddr), &SessionOptions{Options: Options{ClientID: "g2", CleanSession: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if n := settle() - before; n != 4 {
		t.Errorf("a connected Session runs %d goroutines, want 4", n)
	}
	s.Close()
	<-s.Done()
	if n := settle() - before; n != 0 {
		t.Errorf("%d goroutines left after Close", n)
	}
	_ = context.Background
}
