package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzFrameReader feeds arbitrary bytes to the frame reader: it must return
// frames no larger than the limit, or an error, and never panic or allocate
// a declared length above the limit.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 0x93, 0x03, 0x01})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 10, 1, 2})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0xc0})
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := NewFrameReader(bytes.NewReader(data), limit)
		read := 0
		for {
			body, _, err := fr.Next()
			if err != nil {
				var tooLarge *SizeError
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &tooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(body) > limit {
				t.Fatalf("frame of %d bytes above the limit", len(body))
			}
			read += HeaderSize + len(body)
			if read > len(data) {
				t.Fatalf("read %d bytes from %d", read, len(data))
			}
		}
	})
}

// helloSeeds are handshakes as workers send them (every length from 6 to 8
// fields, with and without an import error) and near misses.
func helloSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, msg := range [][]any{
		{KindHello, ProtocolVersion, 4242, "3.11.7", "pure", nil},
		{KindHello, ProtocolVersion, 4242, "3.11.7", "msgpack-c", nil, "/usr/bin/python3.11"},
		{KindHello, ProtocolVersion, 4242, "3.13.0", "pure", nil, "", 0.25},
		{KindHello, ProtocolVersion, 1, "3.8.18", "pure", []any{"import_failed", "ModuleNotFoundError", "No module named 'm'", "Traceback ..."}, "/x/python3", 0.0},
		{KindHello, ProtocolVersion, 1, "3.12.1", "pure", []any{"setup_failed", "ValueError", "bad", ""}, "", 1.5},
		{KindHello, ProtocolVersion, 1, "3.12.1", "pure", []any{"import_failed", "ModuleNotFoundError", "No module named 'numpy'", "", "install numpy"}, "", 0.0},
		{KindHello, ProtocolVersion + 1, 1, "3.11.7", "pure", nil},
		{KindHello, ProtocolVersion, 1, "3.11.7", "pure", []any{"import_failed", "E"}},
		{KindHello, ProtocolVersion, 1, "3.11.7", "pure", nil, "", -1.0},
		{KindHello, ProtocolVersion, 1, "3.11.7", "pure", nil, "", 1e10},
		{KindHello, ProtocolVersion, 1, "3.11.7", "pure", nil, "", "1s"},
		{3, 1, "x"}, // a RESULT
	} {
		b, err := msgpack.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return append(seeds, []byte{0x96, 0x01, 0x01, 0xce, 0xff, 0xff, 0xff, 0xff}, []byte{0x98, 0x01, 0x01, 0x01, 0xdb, 0x7f, 0xff, 0xff, 0xff})
}

// FuzzDecodeHello decodes arbitrary first frames of a worker: a handshake
// or an error, never a panic (the root's FuzzDecodeReply checks that
// decodeHello's errors wrap ErrProtocol). A handshake accepted is
// of this protocol version with a sane set-up duration, and encoding it
// again gives the same handshake.
func FuzzDecodeHello(f *testing.F) {
	for _, seed := range helloSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := DecodeHello(body)
		if err != nil {
			return
		}
		if h.Version != ProtocolVersion || h.SetUp < 0 || h.SetUp > 1e9*time.Second {
			t.Fatalf("accepted a bad handshake: %+v", h)
		}
		var herr any
		if h.Error != nil {
			herr = []any{h.Error.Code, h.Error.Type, h.Error.Message, h.Error.Traceback, h.Error.Hint}
		}
		again, err := msgpack.Marshal([]any{KindHello, h.Version, h.PID, h.PythonVersion, h.Codec, herr, h.Executable, h.SetUp.Seconds()})
		if err != nil {
			t.Fatal(err)
		}
		h2, err := DecodeHello(again)
		if err != nil {
			t.Fatalf("re-encoded handshake %+v refused: %v", h, err)
		}
		if d := h2.SetUp - h.SetUp; d < -time.Microsecond || d > time.Microsecond {
			t.Fatalf("set-up duration %v became %v", h.SetUp, h2.SetUp)
		}
		h2.SetUp = h.SetUp
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("handshake %+v re-decoded as %+v", h, h2)
		}
	})
}

// FuzzFrameReaderSplit reads arbitrary bytes with NextSplit, splitting
// every frame it may at a head length taken from the data, and with Next:
// both see the same frames and errors, and a split frame's head and the
// rest appended to the buffer together are Next's body.
func FuzzFrameReaderSplit(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 0x93, 0x03, 0x01})
	f.Add(append([]byte{0, 0, 0, 40}, bytes.Repeat([]byte{5}, 40)...))
	f.Add(append([]byte{0, 0, 0, 40}, bytes.Repeat([]byte{33}, 30)...))
	f.Add(append([]byte{0, 0, 0, 32}, bytes.Repeat([]byte{32}, 64)...))
	f.Add(append([]byte{0, 0, 0, 33}, bytes.Repeat([]byte{0xff}, 64)...))
	const limit = 1 << 16
	split := func(head []byte, size int, _ uint64) int {
		n := int(head[0]) % (HeadSize + 1)
		if head[0] == 0xff || n >= size {
			return -1 // declined
		}
		return n
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		plain := NewFrameReader(bytes.NewReader(data), limit)
		splitting := NewFrameReader(bytes.NewReader(data), limit)
		splitting.minSplit = HeadSize
		for {
			want, _, werr := plain.Next()
			got, _, out, err := splitting.NextSplit(split, 0, []byte("prefix"))
			if out != nil {
				if string(out[:6]) != "prefix" {
					t.Fatalf("the buffer's contents changed: %q", out[:6])
				}
				got = append(append([]byte(nil), got...), out[6:]...)
			}
			if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
				t.Fatalf("NextSplit's error %v, Next's %v", err, werr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("NextSplit read %x, Next %x", got, want)
			}
		}
	})
}
