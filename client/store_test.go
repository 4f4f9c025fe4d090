package client

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func storeOps(t *testing.T, s Store) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutOutbound(StoredMessage{Seq: 2, PacketID: 7, Topic: "b", Payload: []byte("two"), QoS: 2}))
	must(s.PutOutbound(StoredMessage{Seq: 1, PacketID: 9, Topic: "a", Payload: []byte("one"), QoS: 1, Retain: true}))
	must(s.PutOutbound(StoredMessage{Seq: 3, PacketID: 1, Topic: "c", QoS: 1}))
	must(s.PutOutbound(StoredMessage{Seq: 2, PacketID: 7, Topic: "b", Payload: []byte("two"), QoS: 2, Released: true}))
	must(s.DeleteOutbound(3))
	must(s.PutInbound(5))
	must(s.PutInbound(6))
	must(s.DeleteInbound(5))
}

var wantOut = []StoredMessage{
	{Seq: 1, PacketID: 9, Topic: "a", Payload: []byte("one"), QoS: 1, Retain: true},
	{Seq: 2, PacketID: 7, Topic: "b", Payload: []byte("two"), QoS: 2, Released: true},
}

func checkLoad(t *testing.T, s Store) {
	t.Helper()
	out, in, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantOut, out, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("outbound (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint16{6}, in); diff != "" {
		t.Errorf("inbound (-want +got):\n%s", diff)
	}
}

func TestMemoryStore(t *testing.T) {
	s := NewMemoryStore()
	storeOps(t, s)
	checkLoad(t, s)
}

// TestFileStoreReopen: what was written is there after reopening, also when
// the last record was torn by a crash, and not when a record in the middle
// is damaged.
func TestFileStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.log")
	s, err := OpenFileStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	storeOps(t, s)
	checkLoad(t, s)
	s.Close()

	s, err = OpenFileStore(path, &FileStoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	checkLoad(t, s)
	s.Close()

	// A torn last record: half of one more record at the end.
	data, _ := os.ReadFile(path)
	extra := []byte{0, 0, 0, 20, 1, 2, 3, 4, 1, 0, 0}
	os.WriteFile(path, append(data, extra...), 0o600)
	s, err = OpenFileStore(path, nil)
	if err != nil {
		t.Fatalf("torn tail: %v", err)
	}
	checkLoad(t, s)
	if err := s.PutInbound(8); err != nil { // appends after the cut
		t.Fatal(err)
	}
	s.Close()
	s, _ = OpenFileStore(path, nil)
	if _, in, _ := s.Load(); len(in) != 2 {
		t.Errorf("inbound after torn tail and append: %v", in)
	}
	s.Close()

	// Damage in the middle.
	data, _ = os.ReadFile(path)
	data[12] ^= 0xff
	os.WriteFile(path, data, 0o600)
	if _, err := OpenFileStore(path, nil); !errors.Is(err, ErrCorruptStore) {
		t.Errorf("damaged store: %v, want ErrCorruptStore", err)
	}
}

// TestFileStoreCompacts: a log of mostly dead records is rewritten, and
// still holds the live ones.
func TestFileStoreCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.log")
	s, err := OpenFileStore(path, &FileStoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 1000)
	for i := range uint64(5000) {
		s.PutOutbound(StoredMessage{Seq: i + 10, PacketID: uint16(i%60000 + 1), Topic: "t", Payload: payload, QoS: 1})
		s.DeleteOutbound(i + 10)
	}
	storeOps(t, s)
	s.Close()
	if fi, _ := os.Stat(path); fi.Size() > 2<<20 {
		t.Errorf("log of %d bytes after compaction", fi.Size())
	}
	s, err = OpenFileStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLoad(t, s)
}
