package hostile

import (
	"context"
	"io"
	"log/slog"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/pypool/pypool"
)

func ptr[T any](v T) *T { return &v }

// TestRoundTrips calls every binding of pypool_hostile through a real
// worker, on both interpreters, and checks what comes back: the names Go
// had to change still send Python's, every kind of parameter lands where
// Python wants it, and the classes cross both ways.
func TestRoundTrips(t *testing.T) {
	for _, python := range []string{"", "/usr/bin/python3"} {
		t.Run("python="+python, func(t *testing.T) { roundTrips(t, python) })
	}
}

func roundTrips(t *testing.T, python string) {
	if python != "" {
		if _, err := os.Stat(python); err != nil {
			t.Skipf("no second interpreter: %v (.ci/run installs Debian's)", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_hostile",
		PythonPath: []string{"../../testdata"},
		Python:     python,
		Size:       1,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
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

	anys, err := Keywords(ctx, pool, 1, "f", 2.5, true, []int64{3}, map[string]int64{"k": 4}, "s", "e", nil)
	check("Keywords", anys, []any{int8(1), "f", 2.5, true, []any{int8(3)}, map[string]any{"k": int8(4)}, "s", "e", nil}, err)
	ints, err := OwnNames(ctx, pool, 1, 2, 3, 4, 5, 6, 7, 8, &OwnNamesOptions{Result: ptr[int64](9), Out: ptr[int64](10)})
	check("OwnNames", ints, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, err)
	ints, err = Collide(ctx, pool, 1, 2, &CollideOptions{UserID: ptr[int64](30)})
	check("Collide", ints, []int64{1, 2, 30}, err)
	s, err := X名前(ctx, pool, "ab", &X名前Options{Ñandú: ptr[int64](3)})
	check("X名前", s, "ababab", err)
	anys, err = Shapes(ctx, pool, 1, 2, 3, 4, &ShapesOptions{Kw: map[string]string{"z": "zz"}}, 7, 8)
	check("Shapes", anys, []any{int8(1), int8(2), int8(3), []any{int8(7), int8(8)}, int8(4), int8(5), map[string]any{"z": "zz"}}, err)
	yes, err := Sentinel(ctx, pool, "k", nil)
	check("Sentinel", yes, true, err)
	yes, err = Sentinel(ctx, pool, "k", &SentinelOptions{Default: "given"})
	check("Sentinel(default)", yes, false, err)
	ints, err = Nested(ctx, pool, []map[string]int64{{"a": 1}}, map[int64][]string{1: {"x"}, 2: nil}, &NestedOptions{Z: []Pair{{Left: 1, Right: "r"}}})
	check("Nested", ints, []int64{1, 2, 1}, err)
	rec, err := Bump(ctx, pool, Record{X名前: ptr("名"), Café: ptr[int64](1)})
	check("Bump", rec, Record{X名前: ptr("名"), Café: ptr[int64](2)}, err)
	sp, err := Flip(ctx, pool, Spaced{FirstName: "a", LastName: "b"})
	check("Flip", sp, Spaced{FirstName: "b", LastName: "a"}, err)
	l, err := Chain(ctx, pool, 2)
	check("Chain", l, Link{Value: 1, Next: &Link{Value: 0}}, err)
	p, err := Swap(ctx, pool, Pair{Left: 1, Right: "a"})
	check("Swap", p, Pair{Left: 2, Right: "aa"}, err)
	s, err = Level(ctx, pool, "low", &LevelOptions{N: ptr[int64](2)})
	check("Level", s, "ok", err)
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	anys, err = When(ctx, pool, at, []byte("ab"), []byte("c"))
	if err == nil && len(anys) == 2 {
		when, _ := anys[0].(time.Time)
		check("When", []any{when.UTC(), anys[1]}, []any{at.Add(time.Hour), []byte("abc")}, err)
	} else {
		t.Errorf("When = %#v, %v", anys, err)
	}
	var counted []int64
	for n, err := range Count(ctx, pool, 3) {
		if err != nil {
			t.Fatalf("Count: %v", err)
		}
		counted = append(counted, n)
	}
	check("Count", counted, []int64{0, 1, 2}, nil)
	var strs []string
	for s, err := range NotAGenerator(ctx, pool, 2) {
		if err != nil {
			t.Fatalf("NotAGenerator: %v", err)
		}
		strs = append(strs, s)
	}
	check("NotAGenerator", strs, []string{"0", "1"}, nil)
	n, err := Later(ctx, pool, 1)
	check("Later", n, int64(2), err)
	counted = nil
	for n, err := range Ticks(ctx, pool, 2) {
		if err != nil {
			t.Fatalf("Ticks: %v", err)
		}
		counted = append(counted, n)
	}
	check("Ticks", counted, []int64{0, 1}, nil)
	s, err = Decorated(ctx, pool, 2, &DecoratedOptions{Y: ptr("z")})
	check("Decorated", s, "zz", err)
	n, err = Partial(ctx, pool, 2, nil)
	check("Partial", n, int64(13), err)
	f, err := CallableInstance(ctx, pool, 1.5)
	check("CallableInstance", f, 3.0, err)
	check("Nothing", nil, nil, Nothing(ctx, pool, nil))
}
