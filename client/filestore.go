package client

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileStoreOptions configures a FileStore.
type FileStoreOptions struct {
	// NoSync skips fsync: each record is still written to the file with
	// one write(2) before the packet that depends on it is sent, which
	// survives the program being killed (SIGKILL, a panic, a crash), but
	// not the machine losing power. By default every record is fsynced
	// before Publish sends the message, before a PUBREL, PUBREC or PUBCOMP
	// goes out, which survives power loss too, at the cost of one fsync
	// per record (a QoS 1 message takes two records, a QoS 2 one three).
	NoSync bool
}

// FileStore is a Store in one file: an append-only log of records, each
// checked by a CRC-32, replayed by OpenFileStore and rewritten (to
// path+".tmp", then renamed over path) once it is over 1 MiB and dead
// records make up more than three quarters of it. A record cut short by a
// crash is dropped on open, with everything after it. It is safe for
// concurrent use. The file is locked (flock(2), where the system has it)
// while the FileStore is open: one client, in one process, uses it at a
// time.
type FileStore struct {
	mu   sync.Mutex
	path string
	f    *os.File
	sync bool
	out  map[uint64]StoredMessage
	in   map[uint16]struct{}
	size int64 // bytes in the log
	live int64 // bytes the live records would take
	rec  []byte
	err  error // sticky write error
}

// Record types of the log. recPutOut2 is recPutOut with the message's
// attempts and expiry; recPutOut records of older files are still read.
const (
	recPutOut  byte = 1
	recDelOut  byte = 2
	recPutIn   byte = 3
	recDelIn   byte = 4
	recPutOut2 byte = 5
)

// OpenFileStore opens the store at path, creating it if needed, locks it
// and reads its records. Errors: those of the file system, one wrapping
// ErrStoreLocked when another FileStore has it open (Close releases it),
// and one wrapping ErrCorruptStore when a record in the middle of the file
// is damaged.
func OpenFileStore(path string, opts *FileStoreOptions) (*FileStore, error) {
	s := &FileStore{path: path, sync: opts == nil || !opts.NoSync, out: make(map[uint64]StoredMessage), in: make(map[uint16]struct{})}
	f, err := openLocked(path)
	if errors.Is(err, ErrStoreLocked) {
		return nil, fmt.Errorf("%w: %s", err, path)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt: file store: %w", err)
	}
	s.f = f
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mqtt: file store: %w", err)
	}
	good, err := s.replay(data)
	if err != nil {
		f.Close()
		return nil, err
	}
	// Drop a torn last record, and position for appending.
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("mqtt: file store: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("mqtt: file store: %w", err)
	}
	s.size = good
	return s, nil
}

// ErrCorruptStore reports a damaged FileStore.
var ErrCorruptStore = errors.New("mqtt: file store is corrupt")

// ErrStoreLocked reports that another FileStore, in this process or
// another, has the file open: two writers would each lose the other's
// records.
var ErrStoreLocked = errors.New("mqtt: file store is in use by another FileStore")

// openLocked opens (creating it if needed) and locks the file at path. A
// FileStore that compacts renames a new file over path; a lock taken on the
// old file just before is let go and taken again on the new one.
func openLocked(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := lockFile(f); err != nil {
			f.Close()
			return nil, err
		}
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		f.Close()
		if err1 != nil {
			return nil, err1
		}
		if err2 != nil && !errors.Is(err2, os.ErrNotExist) {
			return nil, err2
		}
	}
}

// replay applies the records in data and returns the length of the valid
// prefix. Records are written one write(2) at a time, each fsynced unless
// NoSync, so only the last one can be cut short by a crash: it is dropped.
// A bad record followed by more data means damage.
func (s *FileStore) replay(data []byte) (int64, error) {
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < 8 {
			return int64(off), nil // torn header
		}
		n := int(binary.BigEndian.Uint32(rest))
		if n > len(rest)-8 {
			return int64(off), nil // torn body
		}
		body := rest[8 : 8+n]
		if n == 0 || crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(rest[4:]) {
			if 8+n == len(rest) {
				return int64(off), nil // the last record, torn
			}
			return int64(off), fmt.Errorf("%w: bad record at byte %d", ErrCorruptStore, off)
		}
		if err := s.apply(body); err != nil {
			return int64(off), fmt.Errorf("%w: record at byte %d: %w", ErrCorruptStore, off, err)
		}
		off += 8 + n
	}
	return int64(off), nil
}

func (s *FileStore) apply(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty record")
	}
	t, b := b[0], b[1:]
	switch t {
	case recPutOut, recPutOut2:
		if len(b) < 8+2+1+1+1+2 {
			return errors.New("short message record")
		}
		m := StoredMessage{
			Seq:      binary.BigEndian.Uint64(b),
			PacketID: binary.BigEndian.Uint16(b[8:]),
			QoS:      b[10],
			Retain:   b[11] != 0,
			Released: b[12] != 0,
		}
		b = b[13:]
		if t == recPutOut2 {
			if len(b) < 4+8+2 {
				return errors.New("short message record")
			}
			m.Attempts = int(binary.BigEndian.Uint32(b))
			if ns := int64(binary.BigEndian.Uint64(b[4:])); ns != 0 {
				m.Expires = time.Unix(0, ns)
			}
			b = b[12:]
		}
		tl := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+tl {
			return errors.New("short topic")
		}
		m.Topic = string(b[2 : 2+tl])
		m.Payload = b[2+tl:]
		if old, ok := s.out[m.Seq]; ok {
			s.live -= recordSize(old)
		}
		s.out[m.Seq] = m
		s.live += recordSize(m)
	case recDelOut:
		if len(b) != 8 {
			return errors.New("bad delete record")
		}
		seq := binary.BigEndian.Uint64(b)
		if old, ok := s.out[seq]; ok {
			s.live -= recordSize(old)
			delete(s.out, seq)
		}
	case recPutIn, recDelIn:
		if len(b) != 2 {
			return errors.New("bad identifier record")
		}
		id := binary.BigEndian.Uint16(b)
		_, had := s.in[id]
		if t == recPutIn && !had {
			s.in[id] = struct{}{}
			s.live += 8 + 3
		} else if t == recDelIn && had {
			delete(s.in, id)
			s.live -= 8 + 3
		}
	default:
		return fmt.Errorf("unknown record type %d", t)
	}
	return nil
}

func recordSize(m StoredMessage) int64 { return 8 + 28 + int64(len(m.Topic)+len(m.Payload)) }

// Load implements Store.
func (s *FileStore) Load() ([]StoredMessage, []uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, in := sorted(s.out, s.in)
	return out, in, nil
}

// PutOutbound implements Store.
func (s *FileStore) PutOutbound(m StoredMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(appendMessage(s.begin(recPutOut2), m))
}

// DeleteOutbound implements Store.
func (s *FileStore) DeleteOutbound(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(binary.BigEndian.AppendUint64(s.begin(recDelOut), seq))
}

// PutInbound implements Store.
func (s *FileStore) PutInbound(id uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(binary.BigEndian.AppendUint16(s.begin(recPutIn), id))
}

// DeleteInbound implements Store.
func (s *FileStore) DeleteInbound(id uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(binary.BigEndian.AppendUint16(s.begin(recDelIn), id))
}

// Close implements Store.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// appendMessage appends the body of a message record to b.
func appendMessage(b []byte, m StoredMessage) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint16(b, m.PacketID)
	b = append(b, m.QoS, bool8(m.Retain), bool8(m.Released))
	b = binary.BigEndian.AppendUint32(b, uint32(min(max(m.Attempts, 0), 1<<31-1)))
	var ns int64
	if !m.Expires.IsZero() {
		ns = m.Expires.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(ns))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Topic)))
	b = append(b, m.Topic...)
	return append(b, m.Payload...)
}

func bool8(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// begin starts a record of type t in the reused buffer, leaving room for
// the length and the CRC.
func (s *FileStore) begin(t byte) []byte {
	return append(s.rec[:0], 0, 0, 0, 0, 0, 0, 0, 0, t)
}

// commit applies the record in b, writes it with one write(2) and fsyncs
// it unless NoSync, then compacts the log when dead records fill most of
// it. s.mu is held.
func (s *FileStore) commit(b []byte) error {
	s.rec = b[:0]
	if s.err != nil {
		return s.err
	}
	if s.f == nil {
		return fmt.Errorf("mqtt: file store: %w", os.ErrClosed)
	}
	body := b[8:]
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	binary.BigEndian.PutUint32(b[4:], crc32.ChecksumIEEE(body))
	if err := s.apply(append([]byte(nil), body...)); err != nil {
		return err
	}
	if _, err := s.f.Write(b); err != nil {
		s.err = fmt.Errorf("mqtt: file store: %w", err)
		return s.err
	}
	s.size += int64(len(b))
	if s.sync {
		if err := s.f.Sync(); err != nil {
			s.err = fmt.Errorf("mqtt: file store: %w", err)
			return s.err
		}
	}
	if s.size > 1<<20 && s.size > 4*s.live {
		return s.compact()
	}
	return nil
}

// compact writes the live records to a new file and renames it over the
// log, fsyncing the file and its directory, so that either the old or the
// new log is found after a crash. s.mu is held.
func (s *FileStore) compact() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		// Locked before it takes the place of the locked log.
		if err = lockFile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("mqtt: file store: compact: %w", err)
	}
	w := bufio.NewWriter(f)
	var size int64
	write := func(b []byte) {
		body := b[8:]
		binary.BigEndian.PutUint32(b, uint32(len(body)))
		binary.BigEndian.PutUint32(b[4:], crc32.ChecksumIEEE(body))
		w.Write(b)
		size += int64(len(b))
	}
	for _, m := range s.out {
		write(appendMessage(s.begin(recPutOut2), m))
	}
	for id := range s.in {
		write(binary.BigEndian.AppendUint16(s.begin(recPutIn), id))
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("mqtt: file store: compact: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	s.f.Close()
	s.f = f
	s.size = size
	_, err = f.Seek(size, io.SeekStart)
	return err
}
