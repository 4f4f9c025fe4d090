package packet

import (
	"errors"
	"fmt"
	"io"
)

var errUnexpectedEOF = io.ErrUnexpectedEOF

// DefaultMaxSize is the packet size limit, in bytes, of a Decoder made with a
// maxSize of 0: 1 MiB, fixed header included.
const DefaultMaxSize = 1 << 20

// minRead is the smallest buffer a Decoder reads into, in bytes.
const minRead = 256

// readAhead is the size, in bytes, up to which a Decoder grows its buffer
// beyond the packet at hand when reads keep filling it: a sign that more
// bytes are waiting, which fewer, larger reads take with fewer system calls.
const readAhead = 32 << 10

// keepBuffer is the largest buffer, in bytes, a Decoder keeps once it is
// empty after a packet much smaller than it: a buffer grown for one large
// packet is let go when the packets that follow are small.
const keepBuffer = 256 << 10

// A Decoder reads control packets from a byte stream such as a net.Conn.
//
// It reads into a buffer of its own, as large reads as the stream gives, so
// one read may yield many packets and one packet may take many reads. The
// buffer grows only as bytes arrive, to at most twice the bytes received, and
// never past the size limit; a packet whose fixed header declares a larger
// size is refused before any of its body is read. The packets Next returns
// are values held by the Decoder, one per packet type, and their byte fields
// alias its buffer, so a stream of packets of sizes already seen is read with
// no allocation.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r          io.Reader
	max        int
	buf        []byte
	start, end int   // unconsumed bytes are buf[start:end]
	last       int   // size of the last packet returned, in bytes
	full       bool  // the last read filled all the room it was given
	err        error // sticky: a malformed stream cannot be resynchronised
	rerr       error // error returned by r along with data, reported once the data is used up

	connect     Connect
	connack     Connack
	publish     Publish
	puback      Puback
	pubrec      Pubrec
	pubrel      Pubrel
	pubcomp     Pubcomp
	subscribe   Subscribe
	suback      Suback
	unsubscribe Unsubscribe
	unsuback    Unsuback
	pingreq     Pingreq
	pingresp    Pingresp
	disconnect  Disconnect
}

// NewDecoder returns a Decoder that reads from r and refuses packets larger
// than maxSize bytes, fixed header included. A maxSize of 0 or less means
// DefaultMaxSize; values above MaxPacketSize are lowered to it.
func NewDecoder(r io.Reader, maxSize int) *Decoder {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxSize > MaxPacketSize {
		maxSize = MaxPacketSize
	}
	return &Decoder{r: r, max: maxSize}
}

// Reset makes d read from r, dropping buffered bytes and any error, and
// keeping its buffer and packet values for reuse.
func (d *Decoder) Reset(r io.Reader) {
	d.r, d.start, d.end, d.err, d.rerr = r, 0, 0, nil, nil
}

// SetMaxSize changes the size limit, in bytes and fixed header included, as
// NewDecoder's maxSize: 0 or less means DefaultMaxSize, and values above
// MaxPacketSize are lowered to it. It applies from the next packet on; a
// pool of Decoders shared by streams of different limits sets it with
// Reset.
func (d *Decoder) SetMaxSize(maxSize int) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	d.max = min(maxSize, MaxPacketSize)
}

// Buffered returns the number of bytes read from the stream but not yet
// consumed by Next.
func (d *Decoder) Buffered() int { return d.end - d.start }

// Next reads and returns the next control packet. The packet and every slice
// in it belong to d and are valid only until the next call to Next or Reset;
// use the packet's Clone method to keep it.
//
// Errors: io.EOF when the stream ends at a packet boundary;
// io.ErrUnexpectedEOF when it ends inside a packet; an *Error wrapping
// ErrPacketTooLarge for a packet over the size limit; an *Error wrapping
// ErrMalformed for a packet that breaks the specification; or the error the
// reader returned. Every error but io.EOF from the reader at a packet
// boundary, and a timeout, is sticky: the stream cannot be resynchronised,
// and later calls return the same error.
//
// A timeout is an error from the reader with a Timeout method that returns
// true, such as a net.Conn's when its read deadline passes
// (os.ErrDeadlineExceeded). It is returned as it is and leaves the Decoder
// as it was, with any part of a packet already read kept: Next may be
// called again, once the deadline has been moved, and resumes where it
// stopped.
func (d *Decoder) Next() (Packet, error) {
	if d.err != nil {
		return nil, d.err
	}
	p, err := d.next()
	if err != nil && err != io.EOF && !isTimeout(err) {
		d.err = err
	}
	return p, err
}

// isTimeout reports whether err is a timeout, as net.Error's Timeout
// method tells, without importing net.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (d *Decoder) next() (Packet, error) {
	// Fixed header: at most five bytes.
	var (
		t                      Type
		flags                  byte
		remaining, headerBytes int
		err                    error
	)
	for {
		t, flags, remaining, headerBytes, err = parseHeader(d.buf[d.start:d.end])
		if err != nil {
			return nil, err
		}
		if headerBytes > 0 {
			break
		}
		if err := d.fill(d.end - d.start + 1); err != nil {
			return nil, err
		}
	}
	total := headerBytes + remaining
	if total > d.max {
		return nil, &Error{Type: t, Reason: fmt.Sprintf("%d bytes, over the limit of %d", total, d.max), Err: ErrPacketTooLarge}
	}
	for d.end-d.start < total {
		if err := d.fill(total); err != nil {
			return nil, err
		}
	}
	body := d.buf[d.start+headerBytes : d.start+total : d.start+total]
	d.start += total
	d.last = total
	p := d.value(t)
	if err := p.decode(flags, body); err != nil {
		return nil, err
	}
	return p, nil
}

// value returns d's packet value of type t; t is a valid type.
func (d *Decoder) value(t Type) Packet {
	switch t {
	case CONNECT:
		return &d.connect
	case CONNACK:
		return &d.connack
	case PUBLISH:
		return &d.publish
	case PUBACK:
		return &d.puback
	case PUBREC:
		return &d.pubrec
	case PUBREL:
		return &d.pubrel
	case PUBCOMP:
		return &d.pubcomp
	case SUBSCRIBE:
		return &d.subscribe
	case SUBACK:
		return &d.suback
	case UNSUBSCRIBE:
		return &d.unsubscribe
	case UNSUBACK:
		return &d.unsuback
	case PINGREQ:
		return &d.pingreq
	case PINGRESP:
		return &d.pingresp
	default:
		return &d.disconnect
	}
}

// fill reads at least one more byte into the buffer, making room for want
// unconsumed bytes in all (want <= d.max). It grows the buffer only when the
// bytes already received fill it, so its size stays within twice what the
// peer actually sent.
func (d *Decoder) fill(want int) error {
	if d.rerr != nil {
		err := d.rerr
		if isTimeout(err) {
			d.rerr = nil // not sticky: the next fill reads again
		}
		return d.eofError(err)
	}
	if d.start == d.end {
		d.start, d.end = 0, 0
		if cap(d.buf) > keepBuffer && d.last < cap(d.buf)/4 {
			d.buf = nil
		}
	}
	if d.full && cap(d.buf) < min(readAhead, d.max) {
		// The last read filled the buffer: more is waiting. Grow it,
		// within twice what the stream has delivered in one read.
		nb := make([]byte, min(max(2*cap(d.buf), minRead), readAhead, max(d.max, minRead)))
		d.end = copy(nb, d.buf[d.start:d.end])
		d.start = 0
		d.buf = nb
		d.full = false
	}
	if cap(d.buf)-d.start < want {
		if d.start > 0 {
			// Move the unconsumed bytes to the front; this invalidates
			// packets returned earlier, as Next documents.
			d.end = copy(d.buf[:cap(d.buf)], d.buf[d.start:d.end])
			d.start = 0
		}
		if d.end == cap(d.buf) {
			n := max(2*cap(d.buf), minRead)
			n = min(n, max(want, minRead), d.max)
			if n <= d.end {
				n = d.end + 1
			}
			nb := make([]byte, n)
			copy(nb, d.buf[:d.end])
			d.buf = nb
		}
	}
	d.buf = d.buf[:cap(d.buf)]
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:])
		if n < 0 || n > len(d.buf)-d.end {
			return errors.New("packet: reader returned an invalid count")
		}
		d.full = n == len(d.buf)-d.end
		d.end += n
		if err != nil {
			if n > 0 {
				d.rerr = err
				return nil
			}
			return d.eofError(err)
		}
		if n > 0 {
			return nil
		}
	}
	return io.ErrNoProgress
}

// eofError turns an io.EOF inside a packet into io.ErrUnexpectedEOF.
func (d *Decoder) eofError(err error) error {
	if err == io.EOF && d.end > d.start {
		return io.ErrUnexpectedEOF
	}
	return err
}
