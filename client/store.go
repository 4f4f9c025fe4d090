package client

import (
	"slices"
	"sync"
	"time"
)

// StoredMessage is an outbound QoS 1 or 2 message kept in a Store from the
// moment Publish accepts it until the server has acknowledged it: PUBACK
// for QoS 1, PUBCOMP for QoS 2 (spec 4.3, [MQTT-3.1.2-4]).
type StoredMessage struct {
	// Seq orders messages by acceptance; re-sends go out in this order
	// [MQTT-4.6.0-1].
	Seq uint64
	// PacketID is the packet identifier the message was given when
	// accepted; it is kept for every re-send [MQTT-2.3.1-3].
	PacketID uint16
	Topic    string
	Payload  []byte
	QoS      byte // 1 or 2
	Retain   bool
	// Released is set once a QoS 2 message got its PUBREC: the server owns
	// it, and only the PUBREL remains to be re-sent, never the PUBLISH
	// again [MQTT-4.3.3-1].
	Released bool
	// Attempts is the number of connections that ended while the message
	// was the oldest one written and awaiting its acknowledgement (see
	// Options.MaxAttempts); it is stored again as it grows only when
	// MaxAttempts is set.
	Attempts int
	// Expires is Message.Expires: zero for never.
	Expires time.Time
}

// A Store keeps the client's side of a session (spec 4.1) across
// connections and, for a durable store, across restarts of the program:
// outbound QoS 1 and 2 messages not yet fully acknowledged, and the packet
// identifiers of received QoS 2 messages awaiting PUBREL [MQTT-4.3.3-2].
//
// The client calls a Store from one goroutine at a time and writes each
// record before the packet that depends on it goes out: a message before
// its PUBLISH, its release before the PUBREL, a received QoS 2 identifier
// before the PUBREC, and its removal before the PUBCOMP. The client never
// modifies a Payload it has passed to PutOutbound, so a Store may keep it.
//
// A Store holds one session: it serves one Client or Session at a time,
// which may start using it once the previous one has ended (Done is
// closed). Two at once would each resend, delete and reuse the other's
// messages and packet identifiers; FileStore refuses a second opening
// (ErrStoreLocked), MemoryStore cannot tell.
type Store interface {
	// Load returns the stored outbound messages, in Seq order, and the
	// received QoS 2 packet identifiers.
	Load() (out []StoredMessage, in []uint16, err error)
	// PutOutbound stores m, replacing a message with the same Seq.
	PutOutbound(m StoredMessage) error
	// DeleteOutbound removes the message with sequence number seq.
	DeleteOutbound(seq uint64) error
	// PutInbound records a received QoS 2 packet identifier.
	PutInbound(id uint16) error
	// DeleteInbound removes a received QoS 2 packet identifier.
	DeleteInbound(id uint16) error
	// Close releases the store's resources.
	Close() error
}

// MemoryStore is a Store in memory: it keeps a session across connections
// of one program run. It is safe for concurrent use.
type MemoryStore struct {
	mu  sync.Mutex
	out map[uint64]StoredMessage
	in  map[uint16]struct{}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{out: make(map[uint64]StoredMessage), in: make(map[uint16]struct{})}
}

// Load implements Store.
func (s *MemoryStore) Load() ([]StoredMessage, []uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, in := sorted(s.out, s.in)
	return out, in, nil
}

// sorted returns the contents of a store's maps: messages in Seq order,
// identifiers in increasing order.
func sorted(outMap map[uint64]StoredMessage, inMap map[uint16]struct{}) ([]StoredMessage, []uint16) {
	out := make([]StoredMessage, 0, len(outMap))
	for _, m := range outMap {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b StoredMessage) int { return cmpUint64(a.Seq, b.Seq) })
	in := make([]uint16, 0, len(inMap))
	for id := range inMap {
		in = append(in, id)
	}
	slices.Sort(in)
	return out, in
}

// PutOutbound implements Store.
func (s *MemoryStore) PutOutbound(m StoredMessage) error {
	s.mu.Lock()
	s.out[m.Seq] = m
	s.mu.Unlock()
	return nil
}

// DeleteOutbound implements Store.
func (s *MemoryStore) DeleteOutbound(seq uint64) error {
	s.mu.Lock()
	delete(s.out, seq)
	s.mu.Unlock()
	return nil
}

// PutInbound implements Store.
func (s *MemoryStore) PutInbound(id uint16) error {
	s.mu.Lock()
	s.in[id] = struct{}{}
	s.mu.Unlock()
	return nil
}

// DeleteInbound implements Store.
func (s *MemoryStore) DeleteInbound(id uint16) error {
	s.mu.Lock()
	delete(s.in, id)
	s.mu.Unlock()
	return nil
}

// Close implements Store; it keeps the contents.
func (s *MemoryStore) Close() error { return nil }

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// nopStore keeps nothing: the Store of a client without Options.Store,
// whose session lives in the client itself.
type nopStore struct{}

func (nopStore) Load() ([]StoredMessage, []uint16, error) { return nil, nil, nil }
func (nopStore) PutOutbound(StoredMessage) error          { return nil }
func (nopStore) DeleteOutbound(uint64) error              { return nil }
func (nopStore) PutInbound(uint16) error                  { return nil }
func (nopStore) DeleteInbound(uint16) error               { return nil }
func (nopStore) Close() error                             { return nil }
