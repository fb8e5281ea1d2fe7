package hinted

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/pypool/pypool"
)

// newPool is a pool of one worker of pypool_hinted on python (the default
// interpreter when "").
func newPool(t *testing.T, python string) *pypool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_hinted",
		PythonPath: []string{"../../../../testdata/pypoolgen"},
		Python:     python,
		Size:       1,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close(context.Background()) })
	return pool
}

func ptr[T any](v T) *T { return &v }

// TestRoundTrips calls every generated function through a real worker and
// checks the typed results.
func TestRoundTrips(t *testing.T) {
	pool := newPool(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}

	s, err := DuplicateText(ctx, pool, "ab")
	check("DuplicateText", s, "abab", err)
	n, err := Add(ctx, pool, 2, 3)
	check("Add", n, int64(5), err)
	fs, err := Scale(ctx, pool, []float64{1, 2}, nil)
	check("Scale", fs, []float64{2, 4}, err)
	fs, err = Scale(ctx, pool, []float64{1, 2}, &ScaleOptions{Factor: ptr(3.0), Offset: ptr(0.5)})
	check("Scale with options", fs, []float64{3.5, 6.5}, err)
	s, err = Greet(ctx, pool, "Ada", "Hello", nil)
	check("Greet", s, "Hello, Ada!", err)
	s, err = Greet(ctx, pool, "Ada", "Hi", &GreetOptions{Punctuation: ptr("?")})
	check("Greet with options", s, "Hi, Ada?", err)
	ps, err := Maybe(ctx, pool, nil)
	check("Maybe(nil)", ps, (*string)(nil), err)
	ps, err = Maybe(ctx, pool, ptr(int64(7)))
	check("Maybe(7)", ps, ptr("7"), err)
	m, err := NewStyle(ctx, pool, nil)
	check("NewStyle", m, map[string]int64(nil), err)
	m, err = NewStyle(ctx, pool, &NewStyleOptions{N: ptr(int64(4))})
	check("NewStyle(4)", m, map[string]int64{"n": 4}, err)
	b, err := Checksum(ctx, pool, []byte{1, 2, 3})
	check("Checksum", b, []byte{3, 2, 1}, err)
	on, err := Flags(ctx, pool, false)
	check("Flags", on, true, err)
	m, err = Counts(ctx, pool, []string{"a", "b", "a"})
	check("Counts", m, map[string]int64{"a": 2, "b": 1}, err)
	is, err := Pair(ctx, pool, 4)
	check("Pair", is, []int64{4, 5}, err)
	mixed, err := Mixed(ctx, pool, 3)
	// Inside a typed result, an any holds msgpack's decoding: the
	// narrowest int type (docs/bindings.md).
	check("Mixed", mixed, []any{int8(3), "3"}, err)
	is, err = Many(ctx, pool, 3)
	check("Many", is, []int64{0, 1, 2}, err)
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	tm, err := When(ctx, pool, at)
	check("When", tm.UTC(), at.Add(time.Second), err)
	v, err := Either(ctx, pool, "x")
	check("Either", v, "x", err)
	v, err = Mode(ctx, pool, "slow")
	check("Mode", v, int64(2), err)
	item, err := MakeItem(ctx, pool, "A-1", &MakeItemOptions{Count: ptr(int64(3))})
	check("MakeItem", item, Item{Sku: "A-1", Count: 3, Tags: []string{}}, err)
	n, err = Total(ctx, pool, []Item{{Sku: "a", Count: 2}, {Sku: "b", Count: 5, Tags: []string{"x"}}})
	check("Total", n, int64(7), err)
	pt, err := Origin(ctx, pool)
	check("Origin", pt, Point{}, err)
	w, err := BoxWeight(ctx, pool, Box{Label: "l", Corner: Point{X: 1, Y: 2}, Weight: ptr(2.5)})
	check("BoxWeight", w, 2.5, err)
	node, err := Tree(ctx, pool, 2)
	check("Tree", node, Node{Name: "n1", Children: []Node{{Name: "n0", Children: []Node{{Name: "leaf", Children: []Node{}}}}}}, err)
	n, err = SlowDouble(ctx, pool, 21)
	check("SlowDouble", n, int64(42), err)
	v, err = Untyped(ctx, pool, "x", nil)
	check("Untyped", v, []any{"x", int64(3)}, err)
	v, err = Untyped(ctx, pool, "x", &UntypedOptions{Y: "y"})
	check("Untyped with y", v, []any{"x", "y"}, err)
	v, err = NoResult(ctx, pool, 5)
	check("NoResult", v, int64(5), err)
	check("Nothing", nil, nil, Nothing(ctx, pool))
	v, err = Anything(ctx, pool, []any{"a"})
	check("Anything", v, []any{"a"}, err)
	list, err := Variadic(ctx, pool, "a", &VariadicOptions{Options: map[string]float64{"k": 1.5}}, 1, 2)
	check("Variadic", list, []any{"a", []any{int8(1), int8(2)}, map[string]any{"k": 1.5}}, err)
	n, err = Positional(ctx, pool, 3, 4)
	check("Positional", n, int64(12), err)
	opts, err := Configure(ctx, pool, "x", Opts{Level: ptr(int64(3))})
	check("Configure", opts, Opts{Level: ptr(int64(3))}, err)

	var counted []int64
	for i, err := range CountUp(ctx, pool, 4) {
		if err != nil {
			t.Fatal(err)
		}
		counted = append(counted, i)
	}
	check("CountUp", counted, []int64{0, 1, 2, 3}, nil)
	var words []string
	for w, err := range Words(ctx, pool, "a typed stream") {
		if err != nil {
			t.Fatal(err)
		}
		words = append(words, w)
	}
	check("Words", words, []string{"a", "typed", "stream"}, nil)
	counted = nil
	for i, err := range Ticks(ctx, pool, 3) {
		if err != nil {
			t.Fatal(err)
		}
		counted = append(counted, i)
	}
	check("Ticks", counted, []int64{0, 1, 2}, nil)

	// A Worker is a Caller too.
	err = pool.Transaction(ctx, func(w *pypool.Worker) error {
		s, err := DuplicateText(ctx, w, "w")
		check("DuplicateText on a Worker", s, "ww", err)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRoundTripArray: an ndarray through Matrix, on the interpreter that
// has numpy (Debian's /usr/bin/python3 with python3-numpy).
func TestRoundTripArray(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import numpy").Run() != nil {
		t.Skip("no numpy in /usr/bin/python3")
	}
	pool := newPool(t, "/usr/bin/python3")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Matrix(ctx, pool, pypool.ArrayOf([]float64{1, 2, 3, 4}, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Float64s()
	if err != nil || !reflect.DeepEqual(got, []float64{2, 4, 6, 8}) || !reflect.DeepEqual(a.Shape, []int{2, 2}) {
		t.Errorf("Matrix = %v %v (%v), want [2 4 6 8] shaped [2 2]", got, a.Shape, err)
	}
}
