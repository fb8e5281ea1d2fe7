package pypool

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// Item and Order are the example of a typed result in docs/types.md
// (Decoding into Go types).
type Item struct {
	Name  string `msgpack:"name"`
	Score int64  `msgpack:"score"`
}

type Order struct {
	ID    string `msgpack:"id"`
	Items []Item `msgpack:"items"`
}

// decodeInto decodes value, encoded by msgpack, into a new T.
func decodeInto[T any](t *testing.T, value any, codec *valueCodec) error {
	t.Helper()
	var out T
	return decodeValueInto(marshalWith(t, value), &out, codec)
}

func assertDecodeError(t *testing.T, err error, want string) {
	t.Helper()
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Equal(t, "pypool: result not decodable: "+want, err.Error())
}

func TestTypeMismatchMessages(t *testing.T) {
	items := []any{
		map[string]any{"name": "a", "score": 1},
		map[string]any{"name": "b", "score": 2},
		map[string]any{"name": "c", "score": 3},
		map[string]any{"name": "d", "score": 0.5},
	}
	err := decodeInto[Order](t, map[string]any{"id": "o", "items": items}, nil)
	assertDecodeError(t, err, `result["items"][3]["score"]: a Python float does not fit Go int64 (field Item.Score)`)

	err = decodeInto[Order](t, map[string]any{"id": 7}, nil)
	assertDecodeError(t, err, `result["id"]: a Python int does not fit Go string (field Order.ID)`)

	err = decodeInto[Order](t, map[string]any{"items": map[string]any{}}, nil)
	assertDecodeError(t, err, `result["items"]: a Python dict does not fit Go []Item (field Order.Items)`)

	err = decodeInto[Order](t, map[string]any{"items": []any{"x"}}, nil)
	assertDecodeError(t, err, `result["items"][0]: a Python str does not fit Go Item (field Order.Items)`)

	err = decodeInto[int64](t, "12", nil)
	assertDecodeError(t, err, `result: a Python str does not fit Go int64`)

	err = decodeInto[[]byte](t, []any{1, 2}, nil)
	assertDecodeError(t, err, `result: a Python list does not fit Go []uint8`)

	err = decodeInto[bool](t, 1, nil)
	assertDecodeError(t, err, `result: a Python int does not fit Go bool`)

	err = decodeInto[[2]int](t, []any{1, 2, 3}, nil)
	assertDecodeError(t, err, `result: a Python list of 3 items does not fit Go [2]int`)

	err = decodeInto[Item](t, []any{"a"}, nil)
	assertDecodeError(t, err, `result: a Python list of 1 items does not fit Go Item, a struct of 2 fields`)

	err = decodeInto[map[string]int](t, map[any]any{1: 2}, nil)
	assertDecodeError(t, err, `result: a Python dict key 1 (int) does not fit Go string`)

	err = decodeInto[map[int]string](t, map[any]any{1: 2}, nil)
	assertDecodeError(t, err, `result[1]: a Python int does not fit Go string`)

	err = decodeInto[map[string]any](t, map[string]any{"a": []any{map[any]any{1: 2}}}, nil)
	assertDecodeError(t, err, `result["a"][0]: a Python dict with keys that are not str does not fit a Go interface (msgpack makes map[string]any): use a map type with those keys, or Call`)

	err = decodeInto[struct{ When string }](t, map[string]any{"When": time.Unix(0, 0)}, nil)
	assertDecodeError(t, err, `result["When"]: a Python datetime does not fit Go string (field struct { When string }.When)`)

	err = decodeInto[*time.Time](t, 1.5, nil)
	assertDecodeError(t, err, `result: a Python float does not fit Go Time`)

	err = decodeInto[[]*Item](t, []any{nil, map[string]any{"score": "high"}}, nil)
	assertDecodeError(t, err, `result[1]["score"]: a Python str does not fit Go int64 (field Item.Score)`)
}

// TestTypeMismatchFollowsTags: fields are found as msgpack finds them: by
// msgpack tag, then Config.StructTag, then name; embedded structs inline.
func TestTypeMismatchFollowsTags(t *testing.T) {
	type Base struct {
		Kind int `json:"kind"`
	}
	type Tagged struct {
		Base
		Both   int `msgpack:"m" json:"j"`
		Json   int `json:"json_name"`
		Plain  int
		Hidden int `msgpack:"-"`
	}
	err := decodeInto[Tagged](t, map[string]any{"j": "x", "Hidden": "x"}, &valueCodec{structTag: "json"})
	require.NoError(t, err, "j is not Both's name: msgpack skips it")

	err = decodeInto[Tagged](t, map[string]any{"m": "x"}, &valueCodec{structTag: "json"})
	assertDecodeError(t, err, `result["m"]: a Python str does not fit Go int (field Tagged.Both)`)

	err = decodeInto[Tagged](t, map[string]any{"json_name": "x"}, &valueCodec{structTag: "json"})
	assertDecodeError(t, err, `result["json_name"]: a Python str does not fit Go int (field Tagged.Json)`)

	err = decodeInto[Tagged](t, map[string]any{"Plain": "x"}, &valueCodec{structTag: "json"})
	assertDecodeError(t, err, `result["Plain"]: a Python str does not fit Go int (field Tagged.Plain)`)

	err = decodeInto[Tagged](t, map[string]any{"kind": "x"}, &valueCodec{structTag: "json"})
	assertDecodeError(t, err, `result["kind"]: a Python str does not fit Go int (field Base.Kind)`)
}

func TestTypeMismatchWithNDArrays(t *testing.T) {
	type Scores struct {
		Best   int64     `msgpack:"best"`
		All    []int64   `msgpack:"all"`
		Matrix [][]int64 `msgpack:"matrix"`
		Arr    Array     `msgpack:"arr"`
	}
	floats := msgpack.RawMessage(float64Ext(t, []int{3}, 1, 2, 3))
	err := decodeInto[Scores](t, map[string]any{"best": floats}, nil)
	assertDecodeError(t, err, `result["best"]: a Python ndarray of float64 with shape [3] does not fit Go int64 (field Scores.Best)`)

	err = decodeInto[Scores](t, map[string]any{"all": floats}, nil)
	assertDecodeError(t, err, `result["all"]: a Python ndarray of float64 with shape [3] does not fit Go []int64 (field Scores.All)`)

	err = decodeInto[Scores](t, map[string]any{"matrix": floats}, nil)
	assertDecodeError(t, err, `result["matrix"]: a Python ndarray of float64 with shape [3] does not fit Go [][]int64 (field Scores.Matrix)`)

	bad := msgpack.RawMessage(ndarrayExt(t, "<f8", []int{2}, make([]byte, 3)))
	err = decodeInto[Scores](t, map[string]any{"arr": bad}, nil)
	assertDecodeError(t, err, `result["arr"]: ndarray: size mismatch: shape [2] of float64 needs 16 bytes of data, the payload has 3 (field Scores.Arr)`)

	err = decodeInto[Scores](t, map[string]any{"arr": "text"}, nil)
	assertDecodeError(t, err, `result["arr"]: a Python str does not fit Go Array: array-like value: element [] is a Python str, not a number or bool (field Scores.Arr)`)
}

func TestTypeMismatchWithExtensions(t *testing.T) {
	type Shape struct {
		Center point `msgpack:"center"`
		Label  string
	}
	err := decodeInto[Shape](t, map[string]any{"center": msgpack.RawMessage(pointValue(t, point{1, 2})), "Label": 3}, pointCodec(""))
	assertDecodeError(t, err, `result["Label"]: a Python int does not fit Go string (field Shape.Label)`)

	err = decodeInto[Shape](t, map[string]any{"center": msgpack.RawMessage(pointValue(t, point{1, 2}))}, nil)
	assertDecodeError(t, err, `result["center"]: msgpack extension type 5 is not registered: add a pypool.Ext for it to Config.Extensions (field Shape.Center)`)

	err = decodeInto[any](t, []any{msgpack.RawMessage(extValue(t, 9, []byte{1}))}, nil)
	assertDecodeError(t, err, `result[0]: msgpack extension type 9 is not registered: add a pypool.Ext for it to Config.Extensions`)
}

// failing decodes itself and always fails: the walk can not explain it, so
// msgpack's error is reported.
type failing struct{}

func (*failing) DecodeMsgpack(*msgpack.Decoder) error { return errors.New("failing always fails") }

func TestTypeMismatchFallsBackToMsgpack(t *testing.T) {
	err := decodeInto[failing](t, 1, nil)
	assertDecodeError(t, err, `into *pypool.failing: failing always fails`)
}
