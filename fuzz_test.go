package pypool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDecodeReply decodes arbitrary message bodies: a reply or an error,
// never a panic; a decoded value re-encodes. A body that is not a
// handshake is refused by decodeHello with an error wrapping ErrProtocol
// (internal/wire's FuzzDecodeHello fuzzes the handshake itself).
func FuzzDecodeReply(f *testing.F) {
	for _, msg := range [][]any{
		{kindResult, 1, "testingtesting"},
		{kindResult, 2, map[string]any{"a": []any{1, 2.5, nil, true}}},
		{kindResult, 3, map[int]string{1: "x"}},
		{kindError, 4, "exception", "ValueError", "bad", "Traceback..."},
		{kindHello, 1, 42, "3.11.7", "pure", nil},
		{kindItems, 5, []any{1, "two", []byte{3}, map[string]any{"four": 4.0}}},
		{kindItems, 6, []any{}},
		{kindItems, 7, "not a list"},
		{kindCallback, 1, "lookup_user", []any{42}},
		{kindCallback, 2, "echo", []any{}},
		{kindCallback, 3, "x", "not a list"},
		{12, 1, "x"},
	} {
		b, err := msgpack.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x93, 0x03, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x93, 0x03, 0x01, 0xc6, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := decodeHello(body); err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("handshake error %v does not wrap ErrProtocol", err)
		}
		r, err := decodeReply(body)
		if err != nil || r.err != nil {
			return
		}
		switch r.kind {
		case kindItems:
			// Each item's bytes lie inside the frame and decode on their own
			// (or fail), whatever the frame holds.
			total := 0
			_, err := eachItem(r.value, nil, func(b []byte, codec *valueCodec) (bool, error) {
				total += len(b)
				_, _ = decodeValue(b, false, codec)
				var out any
				_ = decodeValueInto(b, &out, codec)
				return true, nil
			})
			if err == nil && total > len(r.value) {
				t.Fatalf("items of %d bytes in all from %d bytes", total, len(r.value))
			}
			return
		case kindCallback:
			v, err := decodeValue(r.value, false, nil)
			if _, isList := v.([]any); err == nil && !isList {
				t.Fatalf("callback arguments decoded as %T", v)
			}
			return
		}
		v, err := decodeValue(r.value, false, nil)
		if err != nil {
			return
		}
		if _, err := msgpack.Marshal(v); err != nil {
			t.Fatalf("decoded value %#v does not re-encode: %v", v, err)
		}
	})
}

// FuzzEncodeCall checks that any string arguments encode into a frame whose
// length prefix matches.
func FuzzEncodeCall(f *testing.F) {
	f.Add("duplicate_text", "testing", []byte("bytes"))
	f.Fuzz(func(t *testing.T, fn, s string, b []byte) {
		enc := newCallEncoder(1<<20, nil)
		frame, err := enc.encode(1, fn, []any{s, b}, Kwargs{s: b})
		if err != nil {
			return
		}
		if int(binary.BigEndian.Uint32(frame)) != len(frame)-frameHeaderSize {
			t.Fatal("length prefix does not match the body")
		}
	})
}

// FuzzDecodeArray decodes arbitrary NDARRAY payloads: an error, or an
// Array that is consistent, holds no more bytes than the payload and
// survives a round trip; never a panic. The same bytes as an ext value go
// through Call's decoder and CallAs's fast paths.
func FuzzDecodeArray(f *testing.F) {
	f.Add([]byte("\x92\xa3<f8\x91\x01\x00\x00\x00\x00\x00\x00\xf0?"))
	f.Add([]byte("\x92\xa3>i2\x92\x02\x01\x00\x01\x00\x02"))
	f.Add([]byte("\x92\xa3|b1\x90\x02"))
	f.Add([]byte("\x92\xa3<u4\x93\x00\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Add([]byte("\x92\xa3<f8\x92\xce\x80\x00\x00\x00\xce\x80\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		a, err := decodeNDArray(payload)
		if err == nil {
			if err := a.validate(); err != nil {
				t.Fatalf("decoded an inconsistent array: %v", err)
			}
			if len(a.Data) > len(payload) {
				t.Fatalf("%d bytes of data from a %d-byte payload", len(a.Data), len(payload))
			}
			b, err := msgpack.Marshal(a)
			if err != nil {
				t.Fatalf("a decoded array does not encode: %v", err)
			}
			back, err := decodeValue(b, false, nil)
			if err != nil || !bytes.Equal(back.(Array).Data, a.Data) {
				t.Fatalf("round trip: %v", err)
			}
		}
		var ext bytes.Buffer
		enc := msgpack.NewEncoder(&ext)
		if err := enc.EncodeExtHeader(extNDArray, len(payload)); err != nil {
			t.Fatal(err)
		}
		ext.Write(payload)
		_, _ = decodeValue(ext.Bytes(), false, nil)
		var floats []float64
		_ = decodeValueInto(ext.Bytes(), &floats, nil)
		var into struct{ A []int64 }
		_ = decodeValueInto(append([]byte{0x81, 0xa1, 'A'}, ext.Bytes()...), &into, nil)
	})
}

// FuzzSharedReference decodes arbitrary values, shared-memory references
// (ext 126 and 125) among them, against a real shared memory of 1 MiB with
// a message limit of 256 KiB: a reference out of bounds, or references
// adding up to more than the limit, must be errors, never a panic, a fault
// or a copy beyond the limit; CallAs's rewriting must agree.
func FuzzSharedReference(f *testing.F) {
	mem, err := newSharedMem(256 << 10)
	if err != nil {
		f.Skipf("no shared memory on this platform: %v", err)
	}
	defer mem.retire()
	mem.acquire()
	if _, err := mem.put(bytes.Repeat([]byte{0xab}, 1<<20)); err != nil {
		f.Fatal(err)
	}
	ref := func(code int8, fields ...any) []byte {
		payload, _ := msgpack.Marshal(fields)
		b, _ := msgpack.Marshal(&msgpack.RawMessage{})
		b = b[:0]
		buf := bytes.Buffer{}
		enc := msgpack.NewEncoder(&buf)
		_ = enc.EncodeExtHeader(code, len(payload))
		buf.Write(payload)
		return append(b, buf.Bytes()...)
	}
	f.Add(ref(extShmBytes, 0, 16))
	f.Add(ref(extShmBytes, 1<<20-8, 16))      // past the file's end
	f.Add(ref(extShmBytes, uint64(1)<<63, 1)) // beyond the limit
	f.Add(ref(extShmNDArray, "<f8", []int{4}, 64, 32))
	f.Add(ref(extShmNDArray, "<f8", []int{1 << 40}, 0, 8))                        // shape and length disagree
	f.Add(append([]byte{0x94}, bytes.Repeat(ref(extShmBytes, 0, 200<<10), 4)...)) // 800 KiB in all
	codec := &valueCodec{shared: mem}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeValue(b, false, codec)
		if err == nil && sharedBytesIn(v) > mem.maxMessage {
			t.Fatalf("decoded %d bytes of shared memory, the limit is %d", sharedBytesIn(v), mem.maxMessage)
		}
		var out any
		_ = decodeValueInto(b, &out, codec)
	})
}

// sharedBytesIn adds up the sizes of the byte slices and arrays in v.
func sharedBytesIn(v any) int {
	switch v := v.(type) {
	case []byte:
		return len(v)
	case Array:
		return len(v.Data)
	case []any:
		n := 0
		for _, x := range v {
			n += sharedBytesIn(x)
		}
		return n
	case map[string]any:
		n := 0
		for _, x := range v {
			n += sharedBytesIn(x)
		}
		return n
	case map[any]any:
		n := 0
		for _, x := range v {
			n += sharedBytesIn(x)
		}
		return n
	}
	return 0
}

// bytesCaller is a Caller whose every reply is its bytes: a RESULT's value
// for CallAs, an ITEMS frame's array for StreamAs. It lets the fuzz targets
// drive CallAs and StreamAs themselves, without a worker.
type bytesCaller []byte

func (c bytesCaller) callInto(_ context.Context, _ string, _ []any, x exchange) error {
	return x.into(c, false, nil)
}

func (c bytesCaller) streamInto(_ context.Context, _ string, _ []any, each itemFunc) error {
	_, err := eachItem(c, nil, each)
	return err
}

// fuzzTarget is a struct target of the CallAs and StreamAs fuzz targets.
type fuzzTarget struct {
	A any
	B []int64
	C map[string]any
	D Array
}

// deepAndWideSeeds are values nested beyond maxDecodeDepth (lists, maps,
// inside a struct's field, after a wide prefix), at the bound, and wide
// (issue 18, finding 8).
func deepAndWideSeeds() [][]byte {
	wide := append([]byte{0xdc, 0x27, 0x10}, bytes.Repeat([]byte{0x90}, 10000)...)
	shallowMany := []byte{0xdc, 0x03, 0xe8}
	for range 1000 {
		shallowMany = append(shallowMany, nestedLists(15)...)
	}
	return [][]byte{
		nestedLists(maxDecodeDepth),
		nestedLists(maxDecodeDepth + 1),
		nestedLists(100_000),
		nestedMaps(maxDecodeDepth + 1),
		append([]byte{0x81, 0xa1, 'A'}, nestedLists(50_000)...),
		append([]byte{0x92, 0x01}, nestedLists(maxDecodeDepth)...), // the nil one level too deep
		wide,
		shallowMany,
		append([]byte{0x92}, append(wide[:len(wide):len(wide)], nestedLists(20_000)...)...),
	}
}

// checkDepthAgrees fails t when Call's decoder refuses b as nested too
// deep and err, CallAs's or StreamAs's error for the same value, is nil,
// or is not a typed error.
func checkDepthAgrees(t *testing.T, b []byte, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrResultNotDecodable) && !errors.Is(err, ErrDType) {
		t.Fatalf("error %v wraps neither ErrResultNotDecodable nor ErrDType", err)
	}
	if _, callErr := decodeValue(b, false, nil); callErr != nil && strings.Contains(callErr.Error(), "levels deep") && err == nil {
		t.Fatalf("Call refuses the value (%v), CallAs decoded it", callErr)
	}
}

// FuzzCallAs decodes arbitrary results with CallAs into an any, a slice,
// a map, a struct and an Array: a value or a typed error, never a panic or
// a stack overflow; a value that Call refuses as nested too deep CallAs
// refuses too.
func FuzzCallAs(f *testing.F) {
	for _, seed := range deepAndWideSeeds() {
		f.Add(seed)
	}
	f.Add(marshalSeed(f, map[string]any{"A": []any{1, "x", nil}, "B": []int{1, 2}, "C": map[string]any{"k": 1.5}}))
	f.Add([]byte{0xde, 0xff, 0xff})
	f.Add(marshalSeed(f, map[string]any{"I": []any{1, 300}, "U": map[string]any{"k": -1}, "F": []any{0.5, 1e300},
		"N": map[string]any{"F": []any{2.5}, "N": []any{nil, nil, nil, nil}}}))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		c := bytesCaller(b)
		_, err := CallAs[any](ctx, c, "f")
		checkDepthAgrees(t, b, err)
		_, err = CallAs[[]any](ctx, c, "f")
		checkDepthAgrees(t, b, err)
		_, err = CallAs[map[string]any](ctx, c, "f")
		checkDepthAgrees(t, b, err)
		_, err = CallAs[fuzzTarget](ctx, c, "f")
		checkDepthAgrees(t, b, err)
		_, err = CallAs[fuzzNumbers](ctx, c, "f")
		checkDepthAgrees(t, b, err)
		_, _ = CallAs[Array](ctx, c, "f")
	})
}

// fuzzNumbers is a CallAs target whose numbers are fitted (numfit.go).
type fuzzNumbers struct {
	I []int8
	U map[string]uint16
	F []float32
	N *fuzzNumbers
}

// FuzzStreamAs gives arbitrary ITEMS arrays to StreamAs, into an any and a
// struct: items or a typed error, never a panic or a stack overflow; an
// item that Call refuses as nested too deep StreamAs refuses too.
func FuzzStreamAs(f *testing.F) {
	for _, seed := range deepAndWideSeeds() {
		f.Add(append([]byte{0x91}, seed...)) // one item
	}
	f.Add(marshalSeed(f, []any{1, map[string]any{"A": "x"}, []any{}}))
	f.Fuzz(func(t *testing.T, items []byte) {
		var each [][]byte // the bytes of the items StreamAs gets
		_, _ = eachItem(items, nil, func(b []byte, _ *valueCodec) (bool, error) {
			each = append(each, b)
			return true, nil
		})
		checkStreamAs[any](t, items, each)
		checkStreamAs[fuzzTarget](t, items, each)
	})
}

// checkStreamAs runs StreamAs[T] over the ITEMS array items, whose items
// are each, and checks each outcome: checkDepthAgrees for an item, an
// error wrapping ErrProtocol for a malformed frame.
func checkStreamAs[T any](t *testing.T, items []byte, each [][]byte) {
	t.Helper()
	i := 0
	for _, err := range StreamAs[T](context.Background(), bytesCaller(items), "f") {
		switch {
		case i < len(each):
			checkDepthAgrees(t, each[i], err)
		case !errors.Is(err, ErrProtocol):
			t.Fatalf("a malformed ITEMS frame gave %v, not ErrProtocol", err)
		}
		i++
	}
}

// marshalSeed is msgpack's encoding of v.
func marshalSeed(f *testing.F, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
