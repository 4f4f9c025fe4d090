package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	gomqttclient "github.com/256dpi/gomqtt/client"
	gomqttpkt "github.com/256dpi/gomqtt/packet"
	atwat "github.com/at-wat/mqtt-go"
	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
	pahomqtt "github.com/eclipse/paho.mqtt.golang"
)

// Client settings shared by every implementation, where it has them.
const (
	// window is the number of QoS 1 and 2 messages the throughput and
	// latency benchmarks keep outstanding, and the in-flight limit of the
	// clients that have one (only devicemq does; the peers have no limit,
	// so the benchmark's window is theirs).
	window = 64
	// keepAlive is the keep alive of every client. Nothing here lasts
	// long enough for it to matter, except that a client without a pinger
	// (at-wat's BaseClient) must not be dropped by the broker.
	keepAlive = 60 * time.Second
)

// A benchClient is one connected client of one implementation.
type benchClient interface {
	// publish sends one message. At QoS 0 it returns once the library has
	// taken the message, without waiting for anything from the network;
	// at QoS 1 and 2 once the flow is complete (PUBACK, PUBCOMP). It is
	// safe for concurrent use.
	publish(ctx context.Context, qos byte, topic string, payload []byte) error
	// close disconnects (DISCONNECT, then the connection is closed) and
	// returns once the client's goroutines have exited, as far as its API
	// tells.
	close()
}

// A windowPublisher is a benchClient whose publish API is asynchronous
// (tokens, futures): publishWindow publishes n messages from the calling
// goroutine, with at most w of them incomplete, and waits for all of them.
// The QoS 1 and 2 throughput benchmarks use it instead of w goroutines
// calling publish.
type windowPublisher interface {
	publishWindow(ctx context.Context, qos byte, topic string, payload []byte, n, w int) error
}

// A clientImpl connects clients of one implementation. Every client
// connects with a clean session, the given client identifier, keep alive
// 60 s and no credentials.
type clientImpl struct {
	name string
	dial func(ctx context.Context, addr, id string) (benchClient, error)
}

// clientImpls are the clients under comparison.
var clientImpls = []clientImpl{
	{"devicemq", dialDevicemq},
	{"paho", dialPaho},
	{"atwat", dialAtwat},
	{"gomqtt", dialGomqtt},
}

// rawImpl is not an MQTT client library but the floor of BenchmarkIdle: a
// bare TCP connection that sends CONNECT, reads the CONNACK and then does
// nothing (no goroutine, no keep alive). What it costs is the broker's
// share, the kernel's socket and the net.Conn.
var rawImpl = clientImpl{"raw", dialRaw}

// --- devicemq ---------------------------------------------------------------

// devicemqClient is this module's client.Client. MaxInflight is raised from
// its default 20 (chosen for mosquitto's inflight quota) to window, as the
// peers have no limit; everything else is default: an in-memory Store,
// MaxPending 1000, InboxSize 256.
type devicemqClient struct{ c *client.Client }

func dialDevicemq(ctx context.Context, addr, id string) (benchClient, error) {
	c, err := client.Dial(ctx, netx.TCP(addr), &client.Options{
		ClientID:    id,
		KeepAlive:   keepAlive,
		MaxInflight: window,
	})
	if err != nil {
		return nil, err
	}
	return devicemqClient{c}, nil
}

func (d devicemqClient) publish(ctx context.Context, qos byte, topic string, payload []byte) error {
	return d.c.Publish(ctx, client.Message{Topic: topic, Payload: payload, QoS: qos})
}

func (d devicemqClient) close() { d.c.Close() }

// --- paho -------------------------------------------------------------------

// pahoClient is github.com/eclipse/paho.mqtt.golang with its defaults
// (NewClientOptions) but for the client identifier and keep alive (30 s by
// default): clean session; the in-memory store (MemoryStore) for in-flight
// messages; OrderMatters true, which only serialises the callbacks of
// received messages (none here); AutoReconnect true, which never fires as
// no connection is lost; ProtocolVersion 0, which is 3.1.1 with a fallback
// to 3.1 only if the server refuses it; WriteTimeout 0, under which Publish
// waits up to 30 s to hand a message to its writer goroutine (through an
// unbuffered channel, with a timer per call). It has no in-flight limit.
type pahoClient struct{ c pahomqtt.Client }

func dialPaho(ctx context.Context, addr, id string) (benchClient, error) {
	o := pahomqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(id).
		SetCleanSession(true).
		SetKeepAlive(keepAlive)
	c := pahomqtt.NewClient(o)
	if err := pahoWait(ctx, c.Connect()); err != nil {
		c.Disconnect(0)
		return nil, err
	}
	return pahoClient{c}, nil
}

// pahoWait waits for tok to complete, or ctx to end.
func pahoWait(ctx context.Context, tok pahomqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p pahoClient) publish(ctx context.Context, qos byte, topic string, payload []byte) error {
	tok := p.c.Publish(topic, qos, false, payload)
	if qos == 0 {
		// The token completes once the message is written; report a
		// failure that is already known, but do not wait.
		select {
		case <-tok.Done():
			return tok.Error()
		default:
			return nil
		}
	}
	return pahoWait(ctx, tok)
}

func (p pahoClient) publishWindow(ctx context.Context, qos byte, topic string, payload []byte, n, w int) error {
	ring := make([]pahomqtt.Token, w)
	for i := range n {
		if tok := ring[i%w]; tok != nil {
			if err := pahoWait(ctx, tok); err != nil {
				return err
			}
		}
		ring[i%w] = p.c.Publish(topic, qos, false, payload)
	}
	for _, tok := range ring {
		if tok != nil {
			if err := pahoWait(ctx, tok); err != nil {
				return err
			}
		}
	}
	return nil
}

// close waits up to 1 s for the DISCONNECT to be written; paho's Disconnect
// returns once its connection goroutines have stopped.
func (p pahoClient) close() { p.c.Disconnect(1000) }

// --- at-wat -----------------------------------------------------------------

// atwatClient is github.com/at-wat/mqtt-go's BaseClient, the plain
// connection (its ReconnectClient and RetryClient add reconnection and
// retries on top). Publish writes the packet on the caller's goroutine
// under a mutex, one write(2) per packet; it takes a *Message, which it
// fills with a packet identifier, so every call needs a fresh one. It has
// no in-flight limit and keeps nothing for resending. A BaseClient sends no
// PINGREQ by itself: applications run mqtt.KeepAlive on a goroutine of
// their own (which only notices that the client is closed at its next
// tick), so its idle cost here lacks that goroutine.
type atwatClient struct{ c *atwat.BaseClient }

func dialAtwat(ctx context.Context, addr, id string) (benchClient, error) {
	c, err := atwat.DialContext(ctx, "mqtt://"+addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Connect(ctx, id, atwat.WithCleanSession(true), atwat.WithKeepAlive(uint16(keepAlive/time.Second))); err != nil {
		c.Close()
		return nil, err
	}
	return atwatClient{c}, nil
}

func (a atwatClient) publish(ctx context.Context, qos byte, topic string, payload []byte) error {
	return a.c.Publish(ctx, &atwat.Message{Topic: topic, QoS: atwat.QoS(qos), Payload: payload})
}

func (a atwatClient) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.c.Disconnect(ctx)
	select {
	case <-a.c.Done(): // its reader goroutine has exited
	case <-ctx.Done():
	}
}

// --- gomqtt -----------------------------------------------------------------

// gomqttClient is github.com/256dpi/gomqtt's client.Client with its
// defaults (NewConfig) but for the client identifier and keep alive (30 s
// by default): clean session, the in-memory session store, and
// MaxWriteDelay 10 ms: packets are buffered and the buffer is flushed at
// most 10 ms after its first packet was added (or when it fills up), which
// batches writes under load at the cost of up to 10 ms of latency for a
// lone packet. (Setting it to 0 flushes after every packet.) It has no
// in-flight limit.
type gomqttClient struct{ c *gomqttclient.Client }

// gomqttTimeout bounds every wait on a gomqtt future, which take a timeout
// rather than a context.
const gomqttTimeout = time.Minute

func dialGomqtt(ctx context.Context, addr, id string) (benchClient, error) {
	c := gomqttclient.New()
	cfg := gomqttclient.NewConfigWithClientID("tcp://"+addr, id)
	cfg.KeepAlive = keepAlive.String()
	cf, err := c.Connect(cfg)
	if err != nil {
		return nil, err
	}
	if err := cf.Wait(timeoutOf(ctx)); err != nil {
		c.Close()
		return nil, err
	}
	if rc := cf.ReturnCode(); rc != gomqttpkt.ConnectionAccepted {
		c.Close()
		return nil, fmt.Errorf("gomqtt: CONNACK %v", rc)
	}
	return gomqttClient{c}, nil
}

// timeoutOf returns the time left until ctx's deadline, or gomqttTimeout.
func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return gomqttTimeout
}

func (g gomqttClient) publish(ctx context.Context, qos byte, topic string, payload []byte) error {
	f, err := g.c.Publish(topic, payload, gomqttpkt.QOS(qos), false)
	if err != nil || qos == 0 {
		// A QoS 0 future is complete on return, the packet buffered.
		return err
	}
	return f.Wait(timeoutOf(ctx))
}

func (g gomqttClient) publishWindow(ctx context.Context, qos byte, topic string, payload []byte, n, w int) error {
	ring := make([]gomqttclient.GenericFuture, w)
	timeout := timeoutOf(ctx)
	for i := range n {
		if f := ring[i%w]; f != nil {
			if err := f.Wait(timeout); err != nil {
				return err
			}
		}
		f, err := g.c.Publish(topic, payload, gomqttpkt.QOS(qos), false)
		if err != nil {
			return err
		}
		ring[i%w] = f
	}
	for _, f := range ring {
		if f != nil {
			if err := f.Wait(timeout); err != nil {
				return err
			}
		}
	}
	return nil
}

// close sends DISCONNECT (flushing the buffer) and waits for the client's
// goroutines.
func (g gomqttClient) close() { g.c.Disconnect() }

// --- raw --------------------------------------------------------------------

type rawClient struct{ c net.Conn }

func dialRaw(ctx context.Context, addr, id string) (benchClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	connect := &packet.Connect{KeepAlive: uint16(keepAlive / time.Second), ClientID: []byte(id)}
	b, err := connect.AppendTo(nil)
	if err == nil {
		_, err = c.Write(b)
	}
	var connack [4]byte
	if err == nil {
		_, err = io.ReadFull(c, connack[:])
	}
	if err == nil && connack != [4]byte{0x20, 2, 0, 0} {
		err = fmt.Errorf("raw: unexpected CONNACK % x", connack)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return rawClient{c}, nil
}

func (rawClient) publish(context.Context, byte, string, []byte) error {
	return errors.ErrUnsupported
}

func (r rawClient) close() {
	r.c.Write([]byte{0xe0, 0}) // DISCONNECT
	r.c.Close()
}
