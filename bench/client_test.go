package bench

// Client benchmarks: this module's client and its peers publishing to real
// brokers over loopback TCP, in one run.
//
//	go test -run XXX -bench Publish -benchtime 2s . | tee new.txt
//	go test -run XXX -bench Latency -benchtime 2000x . | tee -a new.txt
//	go test -run XXX -bench Idle -benchtime 3x . | tee -a new.txt
//	benchstat -col /impl new.txt
//
// Every implementation connects with a clean session, keep alive 60 s, its
// in-memory defaults for in-flight state, and no in-flight limit below the
// benchmark's window of 64 (see clients_test.go for each one's settings and
// quirks). TestClientAdapters checks that every setup actually delivers
// what it publishes.
//
// Notes for reading the results:
//
//   - With broker=inproc the broker runs in the benchmark's process: its CPU
//     time competes with the client's, and allocs/op and B/op count the
//     broker's allocations too (the same for every client, give or take
//     their packets). broker=mosquitto isolates the client's allocations.
//   - mosquitto keeps its default max_inflight_messages 20. Beyond 20 QoS 2
//     messages awaiting their PUBREL from one client, it answers PUBREC and
//     discards the message (TestClientAdapters logs how many arrive). With
//     a window of 64 a good part of the messages of
//     BenchmarkPublish/broker=mosquitto/qos=2 take that cheaper path, and
//     how many depends on each client's timing. QoS 1 messages are handled
//     at once and never hit the quota.
//   - mosquitto also keeps its default set_tcp_nodelay false: its small
//     writes (PUBACKs) wait under Nagle's algorithm for the client's
//     delayed ACK. With 64 outstanding this shows up as 40 ms stalls in the
//     p99 of some clients (devicemq, and gomqtt with MaxWriteDelay 0), which
//     set_tcp_nodelay true removes.
//   - gomqtt flushes its write buffer at most 10 ms (MaxWriteDelay) after
//     the first packet entered it, or when its 4 KiB fill up: a lone QoS 1
//     round trip takes 10 ms, a QoS 2 one 20 ms, and its windowed QoS 1 and
//     2 throughput depends on whether the window fills the buffer first.
//   - QoS 0 throughput: each client publishes from one goroutine without
//     waiting, then one QoS 1 round trip, inside the timed region, makes
//     sure that everything before it was sent.

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/netx"
)

const (
	benchTopic  = "bench/publish" // nobody subscribes to it
	payloadSize = 64
	// idleClients is the number of clients BenchmarkIdle connects per
	// implementation.
	idleClients = 1000
)

var benchPayload = bytes.Repeat([]byte{'x'}, payloadSize)

// clientID returns a client identifier unique in this process, so that no
// two connections to a broker ever take each other over.
func clientID(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, idSeq.Add(1))
}

var idSeq atomic.Uint64

// benchContext returns a context that ends with tb, or after d.
func benchContext(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// connect dials a client of im and closes it at the end of tb.
func connect(tb testing.TB, ctx context.Context, im clientImpl, addr string) benchClient {
	tb.Helper()
	c, err := im.dial(ctx, addr, clientID("bench-"+im.name))
	if err != nil {
		tb.Fatalf("%s: connect: %v", im.name, err)
	}
	tb.Cleanup(c.close)
	return c
}

// publishSerial publishes n messages from the calling goroutine, one at a
// time as publish allows: at QoS 0 without waiting, at QoS 1 and 2 each
// completed before the next.
func publishSerial(ctx context.Context, c benchClient, qos byte, n int) error {
	for range n {
		if err := c.publish(ctx, qos, benchTopic, benchPayload); err != nil {
			return err
		}
	}
	return nil
}

// publishConcurrent publishes n messages from w goroutines calling publish,
// so that up to w are outstanding at once.
func publishConcurrent(ctx context.Context, c benchClient, qos byte, n, w int) error {
	return spread(n, w, func(int) error { return c.publish(ctx, qos, benchTopic, benchPayload) })
}

// spread calls op(i) for every i in [0, n) from min(w, n) goroutines,
// goroutine g taking g, g+w, g+2w, ..., and returns the first error; a
// goroutine stops at its first error.
func spread(n, w int, op func(i int) error) error {
	w = min(w, n)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for g := range w {
		wg.Go(func() {
			for i := g; i < n; i += w {
				if err := op(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// BenchmarkPublish measures the throughput of 64-byte publishes to a topic
// nobody subscribes to. At QoS 0 one goroutine publishes without waiting,
// and a final QoS 1 round trip makes sure all of it was sent. At QoS 1 and
// 2, 64 messages are outstanding: 64 goroutines each calling the blocking
// Publish (devicemq, atwat), or one goroutine keeping a window of 64 tokens
// or futures (paho, gomqtt).
func BenchmarkPublish(b *testing.B) {
	for _, br := range brokers {
		b.Run("broker="+br.name, func(b *testing.B) {
			addr := br.start(b)
			for _, qos := range []byte{0, 1, 2} {
				for _, im := range clientImpls {
					b.Run(fmt.Sprintf("qos=%d/impl=%s", qos, im.name), func(b *testing.B) {
						ctx := benchContext(b, 5*time.Minute)
						c := connect(b, ctx, im, addr)
						b.ReportAllocs()
						b.ResetTimer()
						var err error
						if qos == 0 {
							err = publishSerial(ctx, c, 0, b.N)
							if err == nil {
								err = c.publish(ctx, 1, benchTopic, benchPayload)
							}
						} else if wp, ok := c.(windowPublisher); ok {
							err = wp.publishWindow(ctx, qos, benchTopic, benchPayload, b.N, window)
						} else {
							err = publishConcurrent(ctx, c, qos, b.N, window)
						}
						b.StopTimer()
						if err != nil {
							b.Fatal(err)
						}
						b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
					})
				}
			}
		})
	}
}

// BenchmarkLatency measures the round trip of a QoS 1 publish (until its
// PUBACK) with 1 or 64 of them outstanding, from as many goroutines each
// publishing and waiting, for every implementation. It reports the median
// and the 99th percentile.
func BenchmarkLatency(b *testing.B) {
	for _, br := range brokers {
		b.Run("broker="+br.name, func(b *testing.B) {
			addr := br.start(b)
			for _, outstanding := range []int{1, window} {
				for _, im := range clientImpls {
					b.Run(fmt.Sprintf("outstanding=%d/impl=%s", outstanding, im.name), func(b *testing.B) {
						ctx := benchContext(b, 5*time.Minute)
						c := connect(b, ctx, im, addr)
						lat := make([]time.Duration, b.N)
						op := func(i int) error {
							start := time.Now()
							err := c.publish(ctx, 1, benchTopic, benchPayload)
							lat[i] = time.Since(start)
							return err
						}
						b.ReportAllocs()
						b.ResetTimer()
						var err error
						if outstanding == 1 {
							for i := range b.N {
								if err = op(i); err != nil {
									break
								}
							}
						} else {
							err = spread(b.N, outstanding, op)
						}
						b.StopTimer()
						if err != nil {
							b.Fatal(err)
						}
						slices.Sort(lat)
						b.ReportMetric(micros(percentile(lat, 50)), "p50-µs")
						b.ReportMetric(micros(percentile(lat, 99)), "p99-µs")
					})
				}
			}
		})
	}
}

// percentile returns the p-th percentile of the sorted durations, by the
// nearest-rank method.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// BenchmarkIdle connects 1000 idle clients of each implementation to
// mosquitto (another process, so that only the clients' memory is counted)
// and reports what each costs: heap in use (HeapInuse after a GC),
// goroutine stacks (StackInuse) and goroutines, divided by 1000. impl=raw,
// a bare connection that sent CONNECT and got its CONNACK, is the floor of
// a TCP connection in Go. Each iteration measures anew; run it with
// -benchtime 1x (it takes about a second per implementation).
func BenchmarkIdle(b *testing.B) {
	raiseNoFile(b, 2*idleClients+512) // mosquitto inherits the limit
	addr := startMosquitto(b)
	for _, im := range append(slices.Clone(clientImpls), rawImpl) {
		b.Run("impl="+im.name, func(b *testing.B) {
			var sum idleCost
			n := 0
			for b.Loop() {
				cost := measureIdle(b, im, addr)
				sum.heap += cost.heap
				sum.stack += cost.stack
				sum.goroutines += cost.goroutines
				n++
			}
			b.ReportMetric(sum.heap/float64(n), "heap-B/client")
			b.ReportMetric(sum.stack/float64(n), "stack-B/client")
			b.ReportMetric(sum.goroutines/float64(n), "goroutines/client")
		})
	}
}

type idleCost struct{ heap, stack, goroutines float64 }

// measureIdle connects idleClients clients of im, measures, and closes them
// again, waiting for the goroutines of the clients and of the broker to
// exit so that the next measurement starts from the same state.
func measureIdle(b *testing.B, im clientImpl, addr string) idleCost {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	warmGoroutines(4 * idleClients)
	var before, after runtime.MemStats
	g0 := settle(&before)

	clients := make([]benchClient, idleClients)
	closeAll := func() {
		spread(len(clients), 64, func(i int) error {
			if clients[i] != nil {
				clients[i].close()
			}
			return nil
		})
		// Wait for the connections to end on the broker's side too.
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > g0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	err := spread(idleClients, 16, func(i int) error {
		c, err := im.dial(ctx, addr, clientID("idle-"+im.name))
		clients[i] = c
		return err
	})
	if err != nil {
		closeAll()
		b.Fatalf("%s: connect: %v", im.name, err)
	}
	// Let whatever a client starts after its CONNACK start.
	time.Sleep(200 * time.Millisecond)
	g1 := settle(&after)
	closeAll()

	return idleCost{
		heap:       (float64(after.HeapInuse) - float64(before.HeapInuse)) / idleClients,
		stack:      (float64(after.StackInuse) - float64(before.StackInuse)) / idleClients,
		goroutines: float64(g1-g0) / idleClients,
	}
}

// warmGoroutines starts n goroutines and lets them end. The runtime keeps
// the descriptors (and stacks) of goroutines that ended for reuse and never
// frees them, so without this the first implementation measured would pay
// for its goroutines' descriptors and the later ones would reuse them.
func warmGoroutines(n int) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range n {
		wg.Go(func() { <-release })
	}
	close(release)
	wg.Wait()
}

// settle collects garbage, reads m and returns the number of goroutines.
func settle(m *runtime.MemStats) int {
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(m)
	return runtime.NumGoroutine()
}

// raiseNoFile raises the soft limit on open files to the hard limit when it
// is below need (Go does so at startup since 1.19, but the limit may have
// been lowered since), and skips b when even the hard limit is too low.
func raiseNoFile(b *testing.B, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max > lim.Cur {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatal(err)
		}
	}
	if lim.Cur < need {
		b.Skipf("RLIMIT_NOFILE is %d, below the %d open files needed", lim.Cur, need)
	}
}

// TestClientAdapters checks every setup the benchmarks compare: against
// each broker, each implementation connects and publishes at QoS 0, 1 and
// 2, and a devicemq subscriber receives every message with its topic,
// payload and QoS; then the benchmarks' own publishing paths (QoS 0 with
// the closing round trip, QoS 1 and 2 with 64 outstanding) deliver every
// message (QoS 0 and 2 exactly once, QoS 1 at least once).
func TestClientAdapters(t *testing.T) {
	for _, br := range brokers {
		t.Run(br.name, func(t *testing.T) {
			addr := br.start(t)
			for _, im := range clientImpls {
				t.Run(im.name, func(t *testing.T) {
					ctx := benchContext(t, time.Minute)
					prefix := "adapters/" + im.name + "/"
					in := subscribe(t, ctx, addr, prefix+"#")
					c := connect(t, ctx, im, addr)

					for qos := range byte(3) {
						topic := fmt.Sprintf("%sone/%d", prefix, qos)
						payload := fmt.Appendf(nil, "%s %s QoS %d", br.name, im.name, qos)
						if err := c.publish(ctx, qos, topic, payload); err != nil {
							t.Fatalf("QoS %d publish: %v", qos, err)
						}
						select {
						case m := <-in:
							if m.Topic != topic || !bytes.Equal(m.Payload, payload) || m.QoS != qos {
								t.Errorf("QoS %d: got %q %q QoS %d, want %q %q", qos, m.Topic, m.Payload, m.QoS, topic, payload)
							}
						case <-ctx.Done():
							t.Fatalf("QoS %d: message not received", qos)
						}
					}

					// The benchmarks' paths, on a topic of their own, each
					// followed by an end marker at the same QoS (at QoS 0, the
					// closing QoS 1 round trip), which arrives after them.
					const n = 500
					for qos := range byte(3) {
						topic := fmt.Sprintf("%sbulk/%d", prefix, qos)
						one := func(int) error { return c.publish(ctx, qos, topic, benchPayload) }
						var err error
						switch wp, ok := c.(windowPublisher); {
						case qos == 0:
							err = spread(n, 1, one)
						case ok:
							err = wp.publishWindow(ctx, qos, topic, benchPayload, n, window)
						default:
							err = spread(n, window, one)
						}
						if err == nil {
							err = c.publish(ctx, max(qos, 1), topic, []byte("end"))
						}
						if err != nil {
							t.Fatalf("QoS %d: %d messages: %v", qos, n, err)
						}
						discards := qos == 2 && br.qos2Quota > 0 && window > br.qos2Quota
						got, end := 0, false
						timeout := time.After(5 * time.Second)
						for !end || (got < n && !discards) {
							select {
							case m := <-in:
								switch {
								case m.Topic != topic:
									t.Errorf("QoS %d: unexpected message on %s", qos, m.Topic)
								case string(m.Payload) == "end":
									end = true
								case m.QoS != qos:
									t.Errorf("QoS %d: message received at QoS %d", qos, m.QoS)
								default:
									got++
								}
							case <-timeout:
								t.Fatalf("QoS %d: %d of %d messages received, end marker received: %v", qos, got, n, end)
							}
						}
						if discards {
							t.Logf("QoS 2 with %d outstanding: %s delivered %d of %d messages (it discards those beyond its %d in flight)", window, br.name, got, n, br.qos2Quota)
						}
					}
					// Nothing more may come, save QoS 1 duplicates.
					deadline := time.After(200 * time.Millisecond)
					for done := false; !done; {
						select {
						case m := <-in:
							if m.QoS != 1 {
								t.Errorf("unexpected QoS %d message on %s", m.QoS, m.Topic)
							}
						case <-deadline:
							done = true
						}
					}
				})
			}
		})
	}
}

// subscribe connects a devicemq client subscribed to filter at QoS 2 and
// returns the channel its messages arrive on.
func subscribe(t *testing.T, ctx context.Context, addr, filter string) <-chan client.Message {
	t.Helper()
	sub, err := client.Dial(ctx, netx.TCP(addr), &client.Options{ClientID: clientID("sub")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	in := make(chan client.Message, 1024)
	_, err = sub.Subscribe(ctx, client.Subscription{Filter: filter, QoS: 2, Handler: func(m client.Message) {
		select {
		case in <- m:
		case <-ctx.Done():
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return in
}
