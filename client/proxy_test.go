package client

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/devicemq/mqtt/packet"
)

// action is what a faultProxy does with a packet.
type action int

const (
	forward action = iota // pass it on
	cut                   // drop it and close both sides
	stall                 // drop it and stop forwarding anything, keeping both sides open (a half-open link)
	drop                  // drop it and go on
)

// faultProxy sits between clients and a broker, reading the MQTT packets
// each way and applying rule to every one: the fault-injecting link of the
// session tests.
type faultProxy struct {
	t      testing.TB
	l      net.Listener
	target string

	mu    sync.Mutex
	rule  func(up bool, p packet.Packet) action // up: client to broker
	links []net.Conn
	wg    sync.WaitGroup
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fp := &faultProxy{t: t, l: l, target: target}
	fp.wg.Add(1)
	go fp.serve()
	t.Cleanup(fp.close)
	return fp
}

func (fp *faultProxy) addr() string { return fp.l.Addr().String() }

func (fp *faultProxy) setRule(rule func(up bool, p packet.Packet) action) {
	fp.mu.Lock()
	fp.rule = rule
	fp.mu.Unlock()
}

// setRuleLocked is setRule from inside a rule, which runs with fp.mu held.
func (fp *faultProxy) setRuleLocked(rule func(up bool, p packet.Packet) action) { fp.rule = rule }

func (fp *faultProxy) apply(up bool, p packet.Packet) action {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.rule == nil {
		return forward
	}
	return fp.rule(up, p)
}

func (fp *faultProxy) close() {
	fp.l.Close()
	fp.mu.Lock()
	for _, c := range fp.links {
		c.Close()
	}
	fp.mu.Unlock()
	fp.wg.Wait()
}

func (fp *faultProxy) serve() {
	defer fp.wg.Done()
	for {
		c, err := fp.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", fp.target)
		if err != nil {
			c.Close()
			continue
		}
		fp.mu.Lock()
		fp.links = append(fp.links, c, s)
		fp.mu.Unlock()
		var once sync.Once
		var stalled sync.Once
		halt := make(chan struct{})
		closeBoth := func() { once.Do(func() { c.Close(); s.Close() }) }
		pump := func(up bool, from, to net.Conn) {
			defer fp.wg.Done()
			dec := packet.NewDecoder(from, packet.MaxPacketSize)
			var buf []byte
			for {
				p, err := dec.Next()
				if err != nil {
					select {
					case <-halt: // stalled: keep the other side open
						io.Copy(io.Discard, from)
					default:
					}
					closeBoth()
					return
				}
				switch fp.apply(up, p) {
				case cut:
					closeBoth()
					return
				case stall:
					stalled.Do(func() { close(halt) })
					io.Copy(io.Discard, from)
					closeBoth()
					return
				case drop:
					continue
				}
				select {
				case <-halt:
					continue
				default:
				}
				buf, _ = p.AppendTo(buf[:0])
				if _, err := to.Write(buf); err != nil {
					closeBoth()
					return
				}
			}
		}
		fp.wg.Add(2)
		go pump(true, c, s)
		go pump(false, s, c)
	}
}

// cutAt returns a rule that cuts the link at the n-th packet of type t
// going the given way, once.
func cutAt(t packet.Type, up bool, n int) func(bool, packet.Packet) action {
	seen := 0
	done := false
	return func(u bool, p packet.Packet) action {
		if done || u != up || p.Type() != t {
			return forward
		}
		if seen++; seen == n {
			done = true
			return cut
		}
		return forward
	}
}
