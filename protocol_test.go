package pypool

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/pypool/pypool/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func frameHeader(body []byte) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(len(body)))
}

func TestDecodeValueRejectsBadInput(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, maxDecodeDepth+5)
	cases := map[string][]byte{
		"empty":                 {},
		"unknown code":          {0xc1},
		"truncated str":         {0xa5, 'a', 'b'},
		"huge array length":     {0xdd, 0xff, 0xff, 0xff, 0xff},
		"huge map length":       {0xdf, 0xff, 0xff, 0xff, 0xff},
		"huge bin length":       {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00},
		"truncated float":       {0xcb, 0x00},
		"trailing bytes":        {0x01, 0x02},
		"unknown ext":           {0xd4, 0x05, 0x00},
		"bad timestamp length":  {0xd5, 0xff, 0x00, 0x00},
		"bytes as map key":      {0x81, 0xc4, 0x01, 'k', 0x01},
		"list as map key":       {0x81, 0x91, 0x01, 0x01},
		"nesting too deep":      deep,
		"truncated nested list": {0x92, 0x01},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := decodeValue(b, false, nil)
			assert.ErrorIs(t, err, ErrResultNotDecodable)
		})
	}
}

func TestDecodeValueMatchesMsgpackEncoding(t *testing.T) {
	when := time.Date(2100, 1, 2, 3, 4, 5, 6, time.UTC) // needs the 96-bit timestamp
	values := []any{
		nil, true, int64(-1), int64(-129), int64(1 << 40), uint64(1 << 63), 0.5,
		strings.Repeat("s", 70000), bytes.Repeat([]byte{7}, 300),
		[]any{int64(1), []any{}}, map[string]any{"k": []any{"v"}},
		when, time.Unix(1<<33, 5).UTC(), time.Unix(100, 0).UTC(),
	}
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		require.NoError(t, err)
		got, err := decodeValue(b, false, nil)
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
}

// TestLargeFramesAreHandedOver: a frame above wire.LargeFrame is handed
// over (owned), and its value may alias it (internal/wire's test checks
// that the reader keeps no large buffer).
func TestLargeFramesAreHandedOver(t *testing.T) {
	payload := bytes.Repeat([]byte{7}, wire.LargeFrame+1)
	body, err := msgpack.Marshal(payload)
	require.NoError(t, err)
	fr := newFrameReader(bytes.NewReader(append(frameHeader(body), body...)), 4*wire.LargeFrame)
	got, owned, err := fr.next()
	require.NoError(t, err)
	assert.True(t, owned, "the reader keeps no large buffer")
	v, err := decodeValue(got, owned, nil)
	require.NoError(t, err)
	assert.Equal(t, payload, v)
}

// TestFrameReaderChecksLengthBeforeAllocating: a frame above the limit is
// ErrMessageTooLarge (internal/wire's test checks that nothing was
// allocated for it).
func TestFrameReaderChecksLengthBeforeAllocating(t *testing.T) {
	fr := newFrameReader(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), 1<<20)
	_, _, err := fr.next()
	assert.ErrorIs(t, err, ErrMessageTooLarge)
	assert.ErrorContains(t, err, "the worker sent a 4294967295-byte message, the limit is 1048576 (Config.MaxMessageSize)")
}

func TestDecodeReplyRejectsUnknownKinds(t *testing.T) {
	for name, v := range map[string]any{
		"unknown kind":    []any{9, 1, "x"},
		"not an array":    "hello",
		"short result":    []any{kindResult, 1},
		"error too short": []any{kindError, 1, "exception"},
		"negative id":     []any{kindResult, -1, nil},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := msgpack.Marshal(v)
			require.NoError(t, err)
			_, err = decodeReply(b)
			assert.ErrorIs(t, err, ErrProtocol)
		})
	}
}

func TestDecodeHelloChecksVersion(t *testing.T) {
	b, err := msgpack.Marshal([]any{kindHello, wire.ProtocolVersion + 1, 12, "3.11", "pure", nil})
	require.NoError(t, err)
	_, err = decodeHello(b)
	assert.ErrorIs(t, err, ErrProtocol)
	assert.Contains(t, err.Error(), "protocol version")

	b, err = msgpack.Marshal([]any{kindHello, wire.ProtocolVersion, 12, "3.11", "pure", nil})
	require.NoError(t, err)
	h, err := decodeHello(b)
	require.NoError(t, err)
	assert.Equal(t, hello{version: wire.ProtocolVersion, pid: 12, pythonVersion: "3.11", codec: "pure"}, h)
}

func TestEncodeCallLayout(t *testing.T) {
	enc := newCallEncoder(1<<20, nil)
	b, err := enc.encode(7, "f", []any{"a", []byte("b")}, Kwargs{"k": 1})
	require.NoError(t, err)
	assert.Equal(t, uint32(len(b)-4), binary.BigEndian.Uint32(b))
	var msg []any
	require.NoError(t, msgpack.Unmarshal(b[4:], &msg))
	assert.Equal(t, []any{int8(kindCall), int8(7), "f", []any{"a", []byte("b")}, map[string]any{"k": int8(1)}}, msg)

	_, err = enc.encode(8, "f", []any{make(chan int)}, nil)
	assert.ErrorIs(t, err, ErrArgNotEncodable)
	b, err = enc.encode(9, "f", nil, nil) // the encoder is usable after an error
	require.NoError(t, err)
	msg = nil
	require.NoError(t, msgpack.Unmarshal(b[4:], &msg))
	assert.Equal(t, []any{int8(kindCall), int8(9), "f", []any{}, nil}, msg)
}
