package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/devicemq/mqtt/packet"
)

// subServer is a scripted server that keeps subscriptions as the spec
// says, in the order packets arrive, and answers everything.
type subServer struct {
	mu    sync.Mutex
	subs  map[string]byte // filter -> QoS
	order []string
	slow  time.Duration
}

func (s *subServer) serve(p *peer) {
	for {
		pk, err := p.dec.Next()
		if err != nil {
			return
		}
		if s.slow > 0 {
			time.Sleep(s.slow)
		}
		var ack packet.Packet
		s.mu.Lock()
		switch pk := pk.(type) {
		case *packet.Subscribe:
			codes := make([]packet.SubackCode, len(pk.Subscriptions))
			for i, sub := range pk.Subscriptions {
				s.subs[string(sub.Filter)] = sub.QoS
				s.order = append(s.order, fmt.Sprintf("SUB %s q%d", sub.Filter, sub.QoS))
				codes[i] = packet.SubackCode(sub.QoS)
			}
			ack = &packet.Suback{PacketID: pk.PacketID, ReturnCodes: codes}
		case *packet.Unsubscribe:
			for _, f := range pk.Filters {
				delete(s.subs, string(f))
				s.order = append(s.order, "UNSUB "+string(f))
			}
			ack = &packet.Unsuback{PacketID: pk.PacketID}
		case *packet.Publish:
			switch pk.QoS {
			case 1:
				ack = &packet.Puback{PacketID: pk.PacketID}
			case 2:
				ack = &packet.Pubrec{PacketID: pk.PacketID}
			}
		case *packet.Pubrel:
			ack = &packet.Pubcomp{PacketID: pk.PacketID}
		case *packet.Pingreq:
			ack = &packet.Pingresp{}
		}
		s.mu.Unlock()
		if ack != nil {
			b, _ := ack.AppendTo(nil)
			if _, err := p.conn.Write(b); err != nil {
				return
			}
		}
	}
}

func routeMap(rt *router) map[string]byte {
	m := map[string]byte{}
	if t := rt.snapshot(); t != nil {
		for _, r := range t.list {
			m[r.filter] = r.qos
		}
	}
	return m
}

// TestHostileConcurrentSubUnsubFullBuffer: many Subscribe/Unsubscribe calls
// of one filter, with different QoS, race while the write buffer is full
// and the server reads slowly. Once all succeeded, the client's routes
// must match the server's subscriptions (filter present, same QoS).
func TestHostileConcurrentSubUnsubFullBuffer(t *testing.T) {
	bad := 0
	for trial := range 30 {
		synctest.Test(t, func(t *testing.T) {
			c, p, _ := dialPipe(t, &Options{ClientID: "b3subs", KeepAlive: -1, WriteBufferSize: 64}, nil)
			srv := &subServer{subs: map[string]byte{}, slow: time.Millisecond}
			go srv.serve(p)
			var wg sync.WaitGroup
			for i := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := range 4 {
						var err error
						if (i+k)%2 == 0 {
							_, err = c.Subscribe(context.Background(), Subscription{Filter: "a", QoS: byte(i % 3), Handler: func(Message) {}})
						} else {
							err = c.Unsubscribe(context.Background(), "a")
						}
						if err != nil {
							t.Errorf("call: %v", err)
						}
						c.Publish(context.Background(), Message{Topic: "fill", QoS: 1, Payload: make([]byte, 40)})
					}
				}()
			}
			wg.Wait()
			synctest.Wait()
			srv.mu.Lock()
			want := fmt.Sprint(srv.subs)
			srv.mu.Unlock()
			got := fmt.Sprint(routeMap(&c.c.rt))
			if got != want {
				bad++
				t.Logf("trial %d: server %s, client routes %s", trial, want, got)
			}
			c.Close()
			<-c.Done()
			p.conn.Close()
			time.Sleep(time.Second)
		})
	}
	if bad > 0 {
		t.Errorf("%d of 30 trials: routes disagree with the server", bad)
	}
}

// TestHostileRestoreRacesUnsubscribe: a Session subscribed to "a" loses its
// connection; Unsubscribe("a") is called while it reconnects; the new
// connection has no session, so the Session subscribes "a" again. The
// UNSUBSCRIBE waits until the restoring SUBSCRIBEs are queued, so the
// server and the client's routes agree: unsubscribed. Before, the
// UNSUBSCRIBE could go out first: the server ended subscribed, while the
// UNSUBACK removed the client's route.
func TestHostileRestoreRacesUnsubscribe(t *testing.T) {
	bad, unsubFirst := 0, 0
	const trials = 40
	for trial := range trials {
		synctest.Test(t, func(t *testing.T) {
			b := newPipeBroker(t)
			s, err := NewSession(b, &SessionOptions{
				Options:    Options{ClientID: "b3restore", KeepAlive: -1},
				MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close(); <-s.Done() }()
			p := acceptConnect(t, b, &packet.Connack{})
			srv := &subServer{subs: map[string]byte{}}
			go srv.serve(p)
			if err := s.WaitConnected(ctxT(t, time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Subscribe(context.Background(), Subscription{Filter: "a", QoS: 1, Handler: func(Message) {}}); err != nil {
				t.Fatal(err)
			}
			p.conn.Close()
			time.Sleep(time.Second)
			unsubErr := make(chan error, 1)
			go func() { unsubErr <- s.Unsubscribe(context.Background(), "a") }()
			synctest.Wait()
			p = b.accept()
			p.expect(packet.CONNECT)
			// A new server-side session: nothing subscribed.
			srv2 := &subServer{subs: map[string]byte{}}
			p.send(&packet.Connack{})
			go srv2.serve(p)
			if err := <-unsubErr; err != nil {
				t.Fatalf("Unsubscribe = %v", err)
			}
			synctest.Wait()
			srv2.mu.Lock()
			want, order := fmt.Sprint(srv2.subs), fmt.Sprint(srv2.order)
			if len(srv2.order) > 0 && srv2.order[0] == "UNSUB a" {
				unsubFirst++
			}
			srv2.mu.Unlock()
			got := fmt.Sprint(routeMap(&s.c.rt))
			if got != want {
				bad++
				t.Logf("trial %d: server saw %s, has %s; client routes %s", trial, order, want, got)
			}
		})
	}
	t.Logf("UNSUBSCRIBE first in %d of %d trials", unsubFirst, trials)
	if bad > 0 {
		t.Errorf("%d of %d trials: routes disagree with the server", bad, trials)
	}
}
