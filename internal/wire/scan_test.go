package wire

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/vmihailenco/msgpack/v5"
)

// FuzzScanner reads arbitrary bytes with the scanner: never a panic; Skip
// returns the bytes of one value from the start; an extension value
// replaced by nil is gone, and the values around it are untouched.
func FuzzScanner(f *testing.F) {
	for _, v := range []any{
		[]any{1, "x", nil, map[string]any{"k": []byte{1}}},
		msgpack.RawMessage{0xd4, 0x05, 0x00},
		[]any{msgpack.RawMessage{0xc7, 0x02, 0x7f, 0x01, 0x02}, 2},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add(bytes.Repeat([]byte{0x91}, MaxDepth+2))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = CheckDeclaredSizes(b)
		d := NewReader(b)
		if v := d.Skip(); d.Err() == nil && (!bytes.HasPrefix(b, v) || len(v)+d.Len() != len(b)) {
			t.Fatalf("Skip returned %d bytes of %d, %d left", len(v), len(b), d.Len())
		}
		out, err := RewriteExts(b, func(int8, []byte) ([]byte, bool, error) { return []byte{0xc0}, true, nil })
		if err != nil {
			return
		}
		_ = scanExts(out, func(_, _ int, code int8, _ []byte) error {
			t.Fatalf("extension %d left after the rewrite", code)
			return nil
		})
	})
}

func TestCheckDeclaredSizes(t *testing.T) {
	assert.NoError(t, CheckDeclaredSizes([]byte{0x92, 0x01, 0x91, 0xc0}))
	assert.ErrorContains(t, CheckDeclaredSizes([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}), "a container declares 4294967295 items in the 1 bytes")
	assert.ErrorContains(t, CheckDeclaredSizes(bytes.Repeat([]byte{0x91}, MaxDepth+2)), "values nested more than 10000 levels deep")
	assert.NoError(t, CheckDeclaredSizes(append(bytes.Repeat([]byte{0x91}, MaxDepth), 0xc0)))
}

func TestAppenders(t *testing.T) {
	for _, n := range []int{0, 15, 16, 1 << 16, 1<<16 + 1} {
		d := NewReader(AppendArrayHeader(nil, n))
		assert.Equal(t, n, d.ArrayLen())
		assert.NoError(t, d.Err())
		assert.Zero(t, d.Len())
	}
	for _, v := range []uint64{0, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		b := AppendUint(nil, v)
		want, err := msgpack.Marshal(v)
		assert.NoError(t, err)
		var got uint64
		assert.NoError(t, msgpack.Unmarshal(b, &got))
		assert.Equal(t, v, got)
		assert.LessOrEqual(t, len(b), len(want), "the shortest form of %d", v)
		d := NewReader(b)
		assert.Equal(t, v, d.Uint())
		assert.NoError(t, d.Err())
	}
}
