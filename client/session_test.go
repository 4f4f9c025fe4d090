package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
	"golang.org/x/sync/errgroup"
)

// counter records what a subscriber receives, by payload.
type counter struct {
	mu    sync.Mutex
	seen  map[string]int
	order map[string][]int // per publisher goroutine, the message numbers in arrival order (first arrivals only)
}

func newCounter() *counter {
	return &counter{seen: map[string]int{}, order: map[string][]int{}}
}

func (k *counter) handler(m Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := string(m.Payload)
	k.seen[p]++
	if k.seen[p] == 1 {
		g, n, _ := strings.Cut(p, "/")
		i, _ := strconv.Atoi(n)
		k.order[g] = append(k.order[g], i)
	}
}

func (k *counter) distinct() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.seen)
}

// check verifies that every message of every publisher arrived, QoS 1 at
// least once and QoS 2 exactly once, each publisher's in order.
func (k *counter) check(t *testing.T, publishers map[string]byte, each int) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	for g, qos := range publishers {
		for i := range each {
			n := k.seen[fmt.Sprintf("%s/%d", g, i)]
			if n == 0 || qos == 2 && n != 1 {
				t.Errorf("%s/%d (QoS %d) arrived %d times", g, i, qos, n)
			}
		}
		for j, i := range k.order[g] {
			if i != j {
				t.Errorf("%s: message %d arrived as number %d", g, i, j)
				break
			}
		}
	}
}

// TestSessionFaults: a publishing Session runs through a link that is cut
// during CONNECT, between PUBLISH and PUBACK, between PUBREC and PUBREL,
// between PUBREL and PUBCOMP, and through a restart of mosquitto (with
// persistence); a subscriber counts what arrives. Every QoS 1 message
// arrives at least once, every QoS 2 message exactly once, in order.
func TestSessionFaults(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{Persistence: true})
	fp := newFaultProxy(t, b.TCPAddr)
	ctx := ctxT(t, 120*time.Second)
	k := newCounter()
	sub, err := NewSession(netx.TCP(b.TCPAddr), &SessionOptions{
		Options:    Options{ClientID: "faults-sub", PersistentSession: true, KeepAlive: 2 * time.Second, InboxSize: 1000},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, Subscription{Filter: "faults/#", QoS: 2, Handler: k.handler}); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int32
	pub, err := NewSession(netx.TCP(fp.addr()), &SessionOptions{
		Options:          Options{ClientID: "faults-pub", PersistentSession: true, KeepAlive: 2 * time.Second},
		MinBackoff:       50 * time.Millisecond,
		MaxBackoff:       200 * time.Millisecond,
		OnConnectionLost: func(error) { lost.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	publishers := map[string]byte{}
	const each = 30
	run := func(name string, fault func()) {
		t.Helper()
		var g errgroup.Group
		for _, qos := range []byte{1, 2} {
			id := fmt.Sprintf("%s-q%d", name, qos)
			publishers[id] = qos
			g.Go(func() error {
				for i := range each {
					if i == each/3 && qos == 2 {
						fault()
					}
					m := Message{Topic: "faults/" + id, Payload: []byte(fmt.Sprintf("%s/%d", id, i)), QoS: qos}
					if err := pub.Publish(ctx, m); err != nil {
						return fmt.Errorf("%s: %w", id, err)
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	run("connect", func() {
		fp.setRule(cutAt(packet.CONNECT, true, 1))
		fp.setRule(func(up bool, p packet.Packet) action {
			if p.Type() == packet.PUBLISH && up {
				fp.setRuleLocked(cutAt(packet.CONNECT, true, 1))
				return cut
			}
			return forward
		})
	})
	run("puback", func() { fp.setRule(cutAt(packet.PUBACK, false, 3)) })
	run("pubrec", func() { fp.setRule(cutAt(packet.PUBREL, true, 2)) })
	run("pubcomp", func() { fp.setRule(cutAt(packet.PUBCOMP, false, 2)) })
	run("restart", func() {
		fp.setRule(nil)
		b.Restart()
	})
	deadline := time.Now().Add(30 * time.Second)
	for k.distinct() < len(publishers)*each && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let duplicates in flight arrive
	k.check(t, publishers, each)
	if lost.Load() < 4 {
		t.Errorf("%d connections lost, want at least 4 (the faults did not happen)", lost.Load())
	}
	st := pub.Stats()
	if st.Reconnects < 4 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestSessionHalfOpen: a link that stops forwarding without closing is
// noticed by keep alive (ErrPingTimeout), and the Session reconnects.
func TestSessionHalfOpen(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	fp := newFaultProxy(t, b.TCPAddr)
	lostc := make(chan error, 4)
	up := make(chan bool, 4)
	s, err := NewSession(netx.TCP(fp.addr()), &SessionOptions{
		Options:          Options{ClientID: "half-open", KeepAlive: time.Second},
		MinBackoff:       50 * time.Millisecond,
		OnConnect:        func(sp bool) { up <- sp },
		OnConnectionLost: func(err error) { lostc <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-up
	fp.setRule(func(up bool, p packet.Packet) action {
		if p.Type() == packet.PINGREQ {
			return stall
		}
		return forward
	})
	start := time.Now()
	select {
	case err := <-lostc:
		elapsed := time.Since(start)
		if !errors.Is(err, ErrPingTimeout) {
			t.Errorf("lost with %v, want ErrPingTimeout", err)
		}
		// Keep alive 1 s, PingTimeout 0.5 s: the PINGREQ goes out at most
		// 1 s after the stall began, and is given up 0.5 s later.
		if elapsed > 3*time.Second {
			t.Errorf("half-open link noticed after %v", elapsed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("half-open link not noticed")
	}
	fp.setRule(nil)
	select {
	case <-up:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnection")
	}
}

// TestSessionOffline: without a connection QoS 0 fails at once with
// ErrNotConnected, QoS 1 and 2 are accepted and sent once connected.
func TestSessionOffline(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	fp := newFaultProxy(t, b.TCPAddr)
	fp.setRule(func(up bool, p packet.Packet) action {
		if p.Type() == packet.CONNECT {
			return cut
		}
		return forward
	})
	ctx := ctxT(t, 20*time.Second)
	k := newCounter()
	sub, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "offline-sub"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, Subscription{Filter: "offline/#", QoS: 2, Handler: k.handler}); err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(netx.TCP(fp.addr()), &SessionOptions{Options: Options{ClientID: "offline"}, MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Publish(ctx, Message{Topic: "offline/q0"}); !errors.Is(err, ErrNotConnected) || !errors.Is(err, ErrNotSent) {
		t.Errorf("QoS 0 offline = %v, want ErrNotConnected", err)
	}
	var g errgroup.Group
	for i := range 10 {
		g.Go(func() error {
			return s.Publish(ctx, Message{Topic: "offline/q", Payload: []byte(fmt.Sprintf("p/%d", i)), QoS: 1 + byte(i%2)})
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Pending < 10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Pending != 10 || st.Connections != 0 {
		t.Fatalf("offline stats %+v", st)
	}
	fp.setRule(nil)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for k.distinct() < 10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := k.distinct(); n != 10 {
		t.Errorf("%d of 10 messages arrived", n)
	}
}

var _ = context.Background
