package client

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// TestPublishWaitingForRoomEndsOnClose: a Publish waiting for room among
// pending messages (MaxPending) returns ErrNotSent and ErrClosed when the
// Client or Session is closed, instead of waiting for ever.
func TestPublishWaitingForRoomEndsOnClose(t *testing.T) {
	// check starts one Publish, then a second that waits for room, closes,
	// and returns what each returned.
	check := func(t *testing.T, publish func() error, closeIt func()) (first, second error) {
		firstc := make(chan error, 1)
		go func() { firstc <- publish() }()
		time.Sleep(50 * time.Millisecond) // the first takes the only room
		secondc := make(chan error, 1)
		go func() { secondc <- publish() }()
		time.Sleep(50 * time.Millisecond)
		closeIt()
		var errs [2]error
		for i, ch := range []chan error{firstc, secondc} {
			select {
			case errs[i] = <-ch:
				if errs[i] == nil {
					t.Error("Publish succeeded")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Publish still waiting after Close")
			}
		}
		return errs[0], errs[1]
	}
	t.Run("Client", func(t *testing.T) {
		c, p := dialFake(t, &Options{ClientID: "room", MaxPending: 1})
		publish := func() error { return c.Publish(context.Background(), Message{Topic: "a", QoS: 1}) }
		first, second := check(t, publish, func() { p.expect(packet.PUBLISH); c.Close() })
		if !errors.Is(first, ErrConnectionLost) {
			t.Errorf("written Publish = %v, want ErrConnectionLost", first)
		}
		if !errors.Is(second, ErrNotSent) || !errors.Is(second, ErrClosed) {
			t.Errorf("waiting Publish = %v, want ErrNotSent and ErrClosed", second)
		}
	})
	t.Run("Session", func(t *testing.T) {
		// Nothing listens on port 1: the session never connects.
		s, err := NewSession(netx.TCP("127.0.0.1:1"), &SessionOptions{Options: Options{ClientID: "room", MaxPending: 1}})
		if err != nil {
			t.Fatal(err)
		}
		publish := func() error {
			err := s.Publish(context.Background(), Message{Topic: "a", QoS: 1})
			if !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrClosed) {
				t.Errorf("Publish = %v, want ErrNotSent and ErrClosed (never written, no Store)", err)
			}
			return err
		}
		check(t, publish, func() { s.Close() })
	})
}

// TestUnsentMessagesNotSent: when the connection ends, messages that never
// left the client and that no Store keeps fail with ErrNotSent, so that the
// caller knows a retry is safe; the one written fails with
// ErrConnectionLost. With a Store, every one stays in it and fails with
// ErrConnectionLost: the next client sends them.
func TestUnsentMessagesNotSent(t *testing.T) {
	for _, withStore := range []bool{false, true} {
		name := "NoStore"
		if withStore {
			name = "MemoryStore"
		}
		t.Run(name, func(t *testing.T) {
			o := &Options{ClientID: "unsent", MaxInflight: 1}
			store := NewMemoryStore()
			if withStore {
				o.Store = store
			}
			c, p := dialFake(t, o)
			const n = 10
			errc := make(chan error, n)
			for range n {
				go func() { errc <- c.Publish(context.Background(), Message{Topic: "a", QoS: 1}) }()
			}
			p.expect(packet.PUBLISH)
			for c.Stats().Pending < n {
				time.Sleep(time.Millisecond)
			}
			c.Close()
			lost, notSent, pending := 0, 0, 0
			for range n {
				err := <-errc
				if errors.Is(err, ErrPending) {
					pending++
				}
				switch {
				case errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrNotSent):
					lost++
				case errors.Is(err, ErrNotSent) && !errors.Is(err, ErrConnectionLost):
					notSent++
				case errors.Is(err, ErrPending):
				default:
					t.Errorf("Publish = %v", err)
				}
			}
			out, _, _ := store.Load()
			if withStore {
				// All stay in the Store; the one written also lost its
				// connection.
				if pending != n || lost != 1 || len(out) != n {
					t.Errorf("%d ErrPending (%d with ErrConnectionLost), %d stored, want %d (1) and %d", pending, lost, len(out), n, n)
				}
			} else if st := c.Stats(); st.Pending != 0 || st.PendingBytes != 0 {
				// Nothing is kept: nothing is pending.
				t.Errorf("after the end, Stats.Pending = %d, PendingBytes = %d, want 0", st.Pending, st.PendingBytes)
			}
			if !withStore && (lost != 1 || notSent != n-1) {
				t.Errorf("%d ErrConnectionLost, %d ErrNotSent, want 1 and %d", lost, notSent, n-1)
			}
		})
	}
}

// TestNilDialer: a nil dialer is an invalid option, not a panic, for Dial
// and for NewSession (whose goroutine would otherwise crash the program).
func TestNilDialer(t *testing.T) {
	if _, err := Dial(context.Background(), nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Dial(nil) = %v, want ErrInvalidOptions", err)
	}
	if s, err := NewSession(nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("NewSession(nil) = %v, want ErrInvalidOptions", err)
		if s != nil {
			s.Close()
		}
	}
	var f netx.DialerFunc
	if _, err := Dial(context.Background(), f, nil); !errors.Is(err, netx.ErrNilDialer) {
		t.Errorf("Dial(nil DialerFunc) = %v, want netx.ErrNilDialer", err)
	}
}

// TestMaxPacketSizeEveryPacket: MaxPacketSize bounds every packet the
// client sends, not PUBLISH alone: a CONNECT over it is an invalid option,
// a SUBSCRIBE or UNSUBSCRIBE over it is refused before it is written.
func TestMaxPacketSizeEveryPacket(t *testing.T) {
	dialed := false
	d := dialerFunc(func() { dialed = true })
	_, err := Dial(context.Background(), d, &Options{ClientID: "c", MaxPacketSize: 10})
	if !errors.Is(err, ErrInvalidOptions) || !errors.Is(err, packet.ErrPacketTooLarge) {
		t.Errorf("Dial with a CONNECT over MaxPacketSize = %v, want ErrInvalidOptions and packet.ErrPacketTooLarge", err)
	}
	if dialed {
		t.Error("dialled with a CONNECT over MaxPacketSize")
	}
	if _, err := NewSession(d, &SessionOptions{Options: Options{ClientID: "c", MaxPacketSize: 10}}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("NewSession with a CONNECT over MaxPacketSize = %v", err)
	}

	c, p := dialFake(t, &Options{ClientID: "max", MaxPacketSize: 200})
	ctx := ctxT(t, 5*time.Second)
	var subs []Subscription
	var filters []string
	for i := range 20 {
		f := strings.Repeat("f", 30) + string(rune('a'+i))
		subs = append(subs, Subscription{Filter: f})
		filters = append(filters, f)
	}
	if _, err := c.Subscribe(ctx, subs...); !errors.Is(err, packet.ErrPacketTooLarge) {
		t.Errorf("Subscribe of %d bytes = %v, want packet.ErrPacketTooLarge", 700, err)
	}
	if err := c.Unsubscribe(ctx, filters...); !errors.Is(err, packet.ErrPacketTooLarge) {
		t.Errorf("Unsubscribe over MaxPacketSize = %v, want packet.ErrPacketTooLarge", err)
	}
	// Nothing was written: the next packet the server sees is this one.
	go c.Publish(ctx, Message{Topic: "after"})
	if pub := p.expect(packet.PUBLISH).(*packet.Publish); string(pub.Topic) != "after" {
		t.Errorf("sent %q", pub.Topic)
	}
}

// TestUnsubscribeErrorNamesUnsubscribe: an invalid filter given to
// Unsubscribe is reported as an UNSUBSCRIBE error.
func TestUnsubscribeErrorNamesUnsubscribe(t *testing.T) {
	c, _ := dialFake(t, &Options{ClientID: "u"})
	err := c.Unsubscribe(context.Background(), "")
	var pe *packet.Error
	if !errors.As(err, &pe) || pe.Type != packet.UNSUBSCRIBE || !errors.Is(err, packet.ErrInvalid) {
		t.Errorf("Unsubscribe(\"\") = %v, want an UNSUBSCRIBE *packet.Error wrapping ErrInvalid", err)
	}
	if strings.Contains(err.Error(), "SUBSCRIBE:") && !strings.Contains(err.Error(), "UNSUBSCRIBE") {
		t.Errorf("message names SUBSCRIBE: %v", err)
	}
}

// TestFileStoreLocked: a second FileStore on the same file is refused while
// the first is open, after it compacted too, and allowed once it is closed.
func TestFileStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.log")
	a, err := OpenFileStore(path, &FileStoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := OpenFileStore(path, nil); !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("second OpenFileStore = %v, want ErrStoreLocked", err)
		b.Close()
	}
	// Compaction puts a new file in place; it is locked too.
	payload := make([]byte, 1000)
	for i := range uint64(5000) {
		a.PutOutbound(StoredMessage{Seq: i + 1, PacketID: 1, Topic: "t", Payload: payload, QoS: 1})
		a.DeleteOutbound(i + 1)
	}
	if b, err := OpenFileStore(path, nil); !errors.Is(err, ErrStoreLocked) {
		t.Errorf("OpenFileStore after compaction = %v, want ErrStoreLocked", err)
		if b != nil {
			b.Close()
		}
	}
	a.Close()
	b, err := OpenFileStore(path, nil)
	if err != nil {
		t.Fatalf("OpenFileStore after Close = %v", err)
	}
	b.Close()
}
