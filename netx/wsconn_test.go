package netx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/go-cmp/cmp"
)

// wantFrame is a frame the server expects from the client.
type wantFrame struct {
	op      ws.OpCode
	payload string // hex
}

// TestWebSocketRead: what the server sends, frame by frame, against the MQTT
// byte stream the client reads and the frames it answers with. It covers
// BR-23 (text frames refused [MQTT-6.0.0-1]; pings, also between
// fragments, answered out of band; empty frames harmless; close
// answered) and packets split over and coalesced in frames
// [MQTT-6.0.0-2].
func TestWebSocketRead(t *testing.T) {
	tests := []struct {
		name string
		opts *WebSocketOptions
		// send holds the server's writes, in hex; each is a separate write.
		send []string
		// hangUp closes the server socket after the writes.
		hangUp bool
		// want is the MQTT stream the client must read, in hex.
		want string
		// wantErr is the error that must follow the stream, nil for none.
		wantErr error
		// wantClose is the CloseError Read must return, if any.
		wantClose *CloseError
		// wantFrames are the frames the client must send meanwhile.
		wantFrames []wantFrame
		// wantHangUp requires the client to close its socket.
		wantHangUp bool
	}{
		{
			name: "packet split over frames",
			send: []string{
				"82 03 30 06 00",
				"82 05 04 74 65 73 74",
			},
			want: "30 06 00 04 74 65 73 74",
		},
		{
			name: "packet split in one write",
			send: []string{
				"82 03 30 06 00 82 05 04 74 65 73 74",
			},
			want: "30 06 00 04 74 65 73 74",
		},
		{
			name: "frame split over writes",
			send: []string{
				"82",
				"7E 00",
				"7E",
				strings.Repeat("AB ", 100),
				strings.Repeat("AB ", 26),
			},
			want: strings.Repeat("AB ", 126),
		},
		{
			name: "several packets in one frame",
			send: []string{
				"82 06 D0 00 D0 00 40 02",
				"82 02 00 01",
			},
			want: "D0 00 D0 00 40 02 00 01",
		},
		{
			name: "fragmented message with ping between fragments",
			send: []string{
				"02 03 30 06 00",
				"89 00",
				"80 05 04 74 65 73 74",
			},
			want: "30 06 00 04 74 65 73 74",
			wantFrames: []wantFrame{
				{op: ws.OpPong, payload: ""},
			},
		},
		{
			name: "three fragments",
			send: []string{
				"02 01 30 00 02 06 00 00 00 80 05 04 74 65 73 74",
			},
			want: "30 06 00 04 74 65 73 74",
		},
		{
			name: "ping with payload",
			send: []string{
				"89 04 01 02 03 04",
				"82 02 D0 00",
			},
			want: "D0 00",
			wantFrames: []wantFrame{
				{op: ws.OpPong, payload: "01 02 03 04"},
			},
		},
		{
			name: "ping with 125 bytes",
			send: []string{
				"89 7D " + strings.Repeat("5A ", 125),
				"82 02 D0 00",
			},
			want: "D0 00",
			wantFrames: []wantFrame{
				{op: ws.OpPong, payload: strings.Repeat("5A ", 125)},
			},
		},
		{
			name: "pong ignored",
			send: []string{
				"8A 02 AA BB 82 02 D0 00",
			},
			want: "D0 00",
		},
		{
			name: "empty binary frame between packets",
			send: []string{
				"82 02 D0 00",
				"82 00",
				"82 02 D0 00",
			},
			want: "D0 00 D0 00",
		},
		{
			name: "text frame",
			send: []string{
				"81 04 74 65 73 74",
			},
			wantErr: ErrTextFrame,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EB"},
			},
			wantHangUp: true,
		},
		{
			name: "text frame after data",
			send: []string{
				"82 02 D0 00 81 00",
			},
			want:    "D0 00",
			wantErr: ErrTextFrame,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EB"},
			},
			wantHangUp: true,
		},
		{
			name: "server close",
			send: []string{
				"88 02 03 E8",
			},
			wantClose: &CloseError{Code: 1000},
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 E8"},
			},
		},
		{
			name: "server close with reason",
			send: []string{
				"88 05 03 E9 62 79 65",
			},
			wantClose: &CloseError{Code: 1001, Reason: "bye"},
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 E9"},
			},
		},
		{
			name: "server close without status",
			send: []string{
				"88 00",
			},
			wantClose: &CloseError{Code: 1005},
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: ""},
			},
		},
		{
			name: "close in mid-packet",
			send: []string{
				"82 03 30 06 00",
				"88 02 03 E8",
			},
			want:      "30 06 00",
			wantClose: &CloseError{Code: 1000},
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 E8"},
			},
		},
		{
			name: "close in mid-message",
			send: []string{
				"02 03 30 06 00 88 02 03 E8",
			},
			want:      "30 06 00",
			wantClose: &CloseError{Code: 1000},
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 E8"},
			},
		},
		{
			name: "close with one byte",
			send: []string{
				"88 01 03",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "close with reserved status 1005",
			send: []string{
				"88 02 03 ED",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "masked server frame",
			send: []string{
				"82 82 01 02 03 04 D1 02",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "reserved bit",
			send: []string{
				"C2 02 D0 00",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "reserved opcode",
			send: []string{
				"83 00",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "control frame over 125 bytes",
			send: []string{
				"89 7E 00 7E " + strings.Repeat("00 ", 126),
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "fragmented control frame",
			send: []string{
				"09 00",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "continuation without a message",
			send: []string{
				"80 02 D0 00",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "new message inside a fragmented one",
			send: []string{
				"02 01 D0 82 01 00",
			},
			want:    "D0",
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "frame over MaxFrameSize",
			opts: &WebSocketOptions{MaxFrameSize: 16},
			send: []string{
				"82 10 " + strings.Repeat("01 ", 16),
				"82 11 " + strings.Repeat("02 ", 17),
			},
			want:    strings.Repeat("01 ", 16),
			wantErr: ErrFrameTooLarge,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 F1"},
			},
			wantHangUp: true,
		},
		{
			name: "huge declared length",
			send: []string{
				"82 7F 00 00 01 00 00 00 00 00 01",
			},
			wantErr: ErrFrameTooLarge,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 F1"},
			},
			wantHangUp: true,
		},
		{
			name: "length with most significant bit",
			opts: &WebSocketOptions{MaxFrameSize: -1},
			send: []string{
				"82 7F 80 00 00 00 00 00 00 00",
			},
			wantErr: ErrProtocol,
			wantFrames: []wantFrame{
				{op: ws.OpClose, payload: "03 EA"},
			},
			wantHangUp: true,
		},
		{
			name: "hang-up between frames",
			send: []string{
				"82 02 D0 00",
			},
			hangUp:  true,
			want:    "D0 00",
			wantErr: io.EOF,
		},
		{
			name: "hang-up inside a payload",
			send: []string{
				"82 05 D0 00",
			},
			hangUp:  true,
			want:    "D0 00",
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name: "hang-up inside a fragmented message",
			send: []string{
				"02 02 D0 00",
			},
			hangUp:  true,
			want:    "D0 00",
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name: "hang-up inside a header",
			send: []string{
				"82 02 D0 00 82 7E 00",
			},
			hangUp:  true,
			want:    "D0 00",
			wantErr: io.ErrUnexpectedEOF,
		},
	}
	for _, tt := range tests {
		for _, bufSize := range []int{1, 3, 4096} {
			t.Run(fmt.Sprintf("%s/buf=%d", tt.name, bufSize), func(t *testing.T) {
				client, server := dialScripted(t, tt.opts)
				go func() {
					for _, s := range tt.send {
						_, err := server.Write(hx(t, s))
						if err != nil {
							return
						}
						time.Sleep(2 * time.Millisecond)
					}
					if tt.hangUp {
						server.Close()
					}
				}()

				// Read the stream, then the error.
				want := hx(t, tt.want)
				var got []byte
				buf := make([]byte, bufSize)
				var err error
				for err == nil && (len(got) < len(want) || tt.wantErr != nil || tt.wantClose != nil) {
					var n int
					n, err = client.Read(buf)
					if n == 0 && err == nil {
						t.Fatal("Read returned 0, nil")
					}
					got = append(got, buf[:n]...)
				}
				if diff := cmp.Diff(want, got, cmp.Comparer(bytes.Equal)); diff != "" {
					t.Errorf(
						"stream (-want +got):\n%s",
						diff)
				}
				switch {
				case tt.wantClose == nil && tt.wantErr == nil:
					if err != nil {
						t.Fatalf(
							"Read: %v",
							err)
					}
				case tt.wantClose != nil:
					var ce *CloseError
					if !errors.As(err, &ce) {
						t.Fatalf(
							"Read error %v; want a *CloseError",
							err)
					}
					if diff := cmp.Diff(tt.wantClose, ce); diff != "" {
						t.Errorf(
							"close (-want +got):\n%s",
							diff)
					}
					if !errors.Is(err, io.EOF) {
						t.Errorf(
							"Read error %v does not wrap io.EOF",
							err)
					}
				case tt.wantErr != nil:
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf(
							"Read error %v; want %v",
							err, tt.wantErr)
					}
				}
				if err != nil {
					// The error is sticky.
					n, err2 := client.Read(buf)
					if n != 0 || err2 != err {
						t.Errorf(
							"second Read = %d, %v; want 0, %v",
							n, err2, err)
					}
				}

				for _, wf := range tt.wantFrames {
					f := readClientFrame(t, server)
					if f.Header.OpCode != wf.op {
						t.Fatalf(
							"client sent opcode %v; want %v",
							f.Header.OpCode, wf.op)
					}
					if diff := cmp.Diff(hx(t, wf.payload), f.Payload, cmp.Comparer(bytes.Equal)); diff != "" {
						t.Errorf(
							"client %v payload (-want +got):\n%s",
							wf.op, diff)
					}
				}
				if tt.wantHangUp {
					expectEOF(t, server)
				}
				if tt.wantClose != nil {
					// The close handshake is done; Write must refuse.
					_, err := client.Write([]byte{0xC0, 0x00})
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf(
							"Write after the close handshake: %v; want net.ErrClosed",
							err)
					}
					// Close sends no second close frame.
					client.Close()
					expectEOF(t, server)
				}
			})
		}
	}
}

func TestWebSocketWriteFrames(t *testing.T) {
	tests := []struct {
		size   int
		header string // hex, without the mask key
	}{
		{
			size:   1,
			header: "82 81",
		},
		{
			size:   125,
			header: "82 FD",
		},
		{
			size:   126,
			header: "82 FE 00 7E",
		},
		{
			size:   4096,
			header: "82 FE 10 00",
		},
		{
			size:   65535,
			header: "82 FE FF FF",
		},
		{
			size:   65536,
			header: "82 FF 00 00 00 00 00 01 00 00",
		},
		{
			size:   100003,
			header: "82 FF 00 00 00 00 00 01 86 A3",
		},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			client, server := dialScripted(t, nil)
			p := make([]byte, tt.size)
			for i := range p {
				p[i] = byte(i*7 + 1)
			}
			orig := bytes.Clone(p)

			errc := make(chan error, 1)
			go func() {
				n, err := client.Write(p)
				if err == nil && n != len(p) {
					err = fmt.Errorf("Write = %d, want %d", n, len(p))
				}
				errc <- err
			}()

			header := hx(t, tt.header)
			got := make([]byte, len(header)+4+tt.size)
			_, err := io.ReadFull(server, got)
			if err != nil {
				t.Fatalf(
					"server read: %v",
					err)
			}
			if err := <-errc; err != nil {
				t.Fatalf(
					"Write: %v",
					err)
			}
			if diff := cmp.Diff(header, got[:len(header)]); diff != "" {
				t.Errorf(
					"frame header (-want +got):\n%s",
					diff)
			}
			var mask [4]byte
			copy(mask[:], got[len(header):])
			payload := got[len(header)+4:]
			ws.Cipher(payload, mask, 0)
			if !bytes.Equal(orig, payload) {
				t.Errorf(
					"unmasked payload differs from the written bytes")
			}
			if !bytes.Equal(orig, p) {
				t.Errorf(
					"Write modified the caller's slice")
			}
		})
	}
}

func TestWebSocketWriteEmpty(t *testing.T) {
	client, server := dialScripted(t, nil)
	n, err := client.Write(nil)
	if n != 0 || err != nil {
		t.Fatalf(
			"Write(nil) = %d, %v; want 0, nil",
			n, err)
	}
	n, err = client.Write([]byte{})
	if n != 0 || err != nil {
		t.Fatalf(
			"Write([]byte{}) = %d, %v; want 0, nil",
			n, err)
	}
	_, err = client.Write([]byte{0xC0, 0x00})
	if err != nil {
		t.Fatal(err)
	}
	// The first frame on the wire is the PINGREQ.
	f := readClientFrame(t, server)
	if f.Header.OpCode != ws.OpBinary || !bytes.Equal(f.Payload, []byte{0xC0, 0x00}) {
		t.Errorf(
			"first client frame %v %x; want binary c000",
			f.Header.OpCode, f.Payload)
	}
}

func TestWebSocketMasksDiffer(t *testing.T) {
	client, server := dialScripted(t, nil)
	seen := make(map[[4]byte]bool)
	for range 16 {
		_, err := client.Write([]byte{0xC0, 0x00})
		if err != nil {
			t.Fatal(err)
		}
		f := readClientFrame(t, server)
		seen[f.Header.Mask] = true
	}
	// 16 random 32-bit keys collide with negligible probability.
	if len(seen) < 15 {
		t.Errorf(
			"%d distinct masking keys in 16 frames",
			len(seen))
	}
}

// TestWebSocketConcurrentWrites writes from several goroutines while the
// server pings: every frame must arrive whole.
func TestWebSocketConcurrentWrites(t *testing.T) {
	client, server := dialScripted(t, nil)
	const (
		writers = 8
		perW    = 200
		pings   = 100
	)

	// Keep reading so that pings are answered.
	readDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, client)
		readDone <- err
	}()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perW {
				// Payload: writer id, sequence number, then filler, so a
				// torn or interleaved frame is detectable.
				p := make([]byte, 5+(i*37)%3000)
				p[0] = byte(w)
				binary.BigEndian.PutUint32(p[1:], uint32(i))
				for j := 5; j < len(p); j++ {
					p[j] = byte(w)
				}
				_, err := client.Write(p)
				if err != nil {
					t.Errorf(
						"writer %d: %v",
						w, err)
					return
				}
			}
		})
	}
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		for i := range pings {
			_, err := server.Write([]byte{0x89, 0x02, byte(i >> 8), byte(i)})
			if err != nil {
				t.Errorf(
					"server ping: %v",
					err)
				return
			}
		}
	}()

	next := make([]uint32, writers)
	var pongs int
	for data := 0; data < writers*perW || pongs < pings; {
		f := readClientFrame(t, server)
		switch f.Header.OpCode {
		case ws.OpPong:
			want := []byte{byte(pongs >> 8), byte(pongs)}
			if !bytes.Equal(f.Payload, want) {
				t.Fatalf(
					"pong %d payload %x; want %x",
					pongs, f.Payload, want)
			}
			pongs++
		case ws.OpBinary:
			w := int(f.Payload[0])
			seq := binary.BigEndian.Uint32(f.Payload[1:])
			if w >= writers || seq != next[w] || len(f.Payload) != 5+(int(seq)*37)%3000 {
				t.Fatalf(
					"frame from writer %d seq %d len %d; want seq %d",
					w, seq, len(f.Payload), next[w])
			}
			for _, b := range f.Payload[5:] {
				if b != byte(w) {
					t.Fatalf(
						"writer %d frame %d carries foreign bytes",
						w, seq)
				}
			}
			next[w]++
			data++
		default:
			t.Fatalf(
				"unexpected client frame %v",
				f.Header.OpCode)
		}
	}
	wg.Wait()
	<-pingDone
	client.Close()
	<-readDone
}

func TestWebSocketClose(t *testing.T) {
	client, server := dialScripted(t, nil)
	err := client.Close()
	if err != nil {
		t.Fatalf(
			"Close: %v",
			err)
	}
	f := readClientFrame(t, server)
	if f.Header.OpCode != ws.OpClose || !bytes.Equal(f.Payload, []byte{0x03, 0xE8}) {
		t.Errorf(
			"client sent %v %x; want a close frame with 1000",
			f.Header.OpCode, f.Payload)
	}
	expectEOF(t, server)

	if err := client.Close(); err != nil {
		t.Errorf(
			"second Close: %v",
			err)
	}
	_, err = client.Write([]byte{0xC0, 0x00})
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf(
			"Write after Close: %v; want net.ErrClosed",
			err)
	}
	_, err = client.Read(make([]byte, 1))
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf(
			"Read after Close: %v; want net.ErrClosed",
			err)
	}
}

// TestWebSocketCloseUnblocksRead closes while a Read waits.
func TestWebSocketCloseUnblocksRead(t *testing.T) {
	client, _ := dialScripted(t, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := client.Read(make([]byte, 16))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	client.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf(
				"blocked Read ended with %v; want net.ErrClosed",
				err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Close did not unblock Read")
	}
}

// TestWebSocketCloseStalledPeer closes while a Write is blocked on a peer
// that reads nothing: Close must still return promptly.
func TestWebSocketCloseStalledPeer(t *testing.T) {
	client, _ := dialScripted(t, nil)
	_ = client.SetDeadline(time.Time{})
	big := make([]byte, 4<<20)
	errc := make(chan error, 1)
	go func() {
		for {
			_, err := client.Write(big)
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // let the socket buffers fill
	start := time.Now()
	client.Close()
	if d := time.Since(start); d > closeTimeout+time.Second {
		t.Errorf(
			"Close took %v with a stalled peer",
			d)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("blocked Write succeeded")
		}
	case <-time.After(testTimeout):
		t.Fatal("Close did not unblock Write")
	}
}

// TestWebSocketReadDeadline checks that a read timeout, even one that
// splits a frame header, leaves the stream usable.
func TestWebSocketReadDeadline(t *testing.T) {
	client, server := dialScripted(t, nil)
	buf := make([]byte, 8)

	_ = client.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := client.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf(
			"Read with nothing sent: %v; want os.ErrDeadlineExceeded",
			err)
	}

	for _, part := range []string{"82", "7E", "00", "04 D0 00"} {
		_, err = server.Write(hx(t, part))
		if err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		n, err := client.Read(buf)
		if part != "04 D0 00" {
			if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf(
					"Read after %q = %d, %v; want a timeout",
					part, n, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(buf[:n], hx(t, "D0 00")) {
			t.Fatalf(
				"Read = %x, %v; want d000",
				buf[:n], err)
		}
	}
	// Mid-payload timeout: two of four payload bytes read so far.
	_, err = server.Write(hx(t, "D0 00"))
	if err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(testTimeout))
	n, err := client.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], hx(t, "D0 00")) {
		t.Fatalf(
			"Read = %x, %v; want d000",
			buf[:n], err)
	}
}

func TestWebSocketAddrAndDeadlines(t *testing.T) {
	client, server := dialScripted(t, nil)
	if got, want := client.LocalAddr().String(), server.RemoteAddr().String(); got != want {
		t.Errorf(
			"LocalAddr %s; want %s",
			got, want)
	}
	if got, want := client.RemoteAddr().String(), server.LocalAddr().String(); got != want {
		t.Errorf(
			"RemoteAddr %s; want %s",
			got, want)
	}
	err := client.SetDeadline(time.Now().Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf(
			"Read past the deadline: %v",
			err)
	}
	_ = client.SetReadDeadline(time.Time{})
	err = client.SetWriteDeadline(time.Now().Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Write([]byte{1})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf(
			"Write past the deadline: %v",
			err)
	}
	// A failed Write leaves the stream unusable.
	_ = client.SetWriteDeadline(time.Time{})
	_, err2 := client.Write([]byte{1})
	if err2 == nil {
		t.Error("Write after a failed Write succeeded")
	}
}
