package pypool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/pypool/pypool"
)

// The example module examples/duplicate/my_module.py defines duplicate_text.
func newExamplePool(ctx context.Context) *pypool.Pool {
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "my_module",
		PythonPath: []string{"examples/duplicate"},
		Size:       2,
	})
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

func ExamplePool_Call() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)

	out, err := pool.Call(ctx, "duplicate_text", "testing")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output: testingtesting
}

func ExampleCallAs() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)

	// The result is decoded straight into a string.
	s, err := pypool.CallAs[string](ctx, pool, "duplicate_text", "ab")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(s), s)
	// Output: 4 abab
}

func ExampleKwargs() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)

	// A trailing Kwargs becomes Python keyword arguments: duplicate_text(text="hi").
	out, err := pool.Call(ctx, "duplicate_text", pypool.Kwargs{"text": "hi"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output: hihi
}

func ExamplePool_Transaction() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)

	// Both calls run in the same Python process.
	err := pool.Transaction(ctx, func(w *pypool.Worker) error {
		first, err := w.Call(ctx, "duplicate_text", "a")
		if err != nil {
			return err
		}
		second, err := w.Call(ctx, "duplicate_text", first)
		fmt.Println(second)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: aaaa
}

func ExamplePythonError() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)

	_, err := pool.Call(ctx, "duplicate_text") // missing argument
	var pyErr *pypool.PythonError
	if errors.As(err, &pyErr) {
		fmt.Println(pyErr.Type)
		fmt.Println(err)
		// fmt.Printf("%+v\n", pyErr) would print the Python traceback too.
	}
	_, err = pool.Call(ctx, "_private_helper")
	fmt.Println(errors.Is(err, pypool.ErrFunctionNotFound))
	// Output:
	// TypeError
	// pypool: python TypeError: duplicate_text() missing 1 required positional argument: 'text'
	// true
}

func ExamplePool_Stats() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)

	s := pool.Stats()
	fmt.Println(s.Size, s.Workers, s.Idle, s.InUse)
	// Output: 2 2 2 0
}

// Stats.Status answers poolboy's status/1: its tuple
// {StateName, Workers, Overflow, InUse} is {s.Status(), s.Idle, s.Overflow, s.InUse}.
func ExampleStats_Status() {
	ctx := context.Background()
	pool := newExamplePool(ctx) // Size 2, no overflow
	defer pool.Close(ctx)

	s := pool.Stats()
	fmt.Println(s.Status(), s.Idle, s.Overflow, s.InUse)
	_ = pool.Transaction(ctx, func(*pypool.Worker) error {
		_ = pool.Transaction(ctx, func(*pypool.Worker) error {
			s := pool.Stats()
			fmt.Println(s.Status(), s.Idle, s.Overflow, s.InUse)
			return nil
		})
		return nil
	})
	// Output:
	// ready 2 0 0
	// full 0 0 2
}

// TryCall sheds load instead of queueing: with every worker busy (and no
// room for an overflow worker) it fails at once with ErrPoolExhausted.
func ExamplePool_TryCall() {
	ctx := context.Background()
	pool := newExamplePool(ctx) // Size 2, no overflow
	defer pool.Close(ctx)

	_ = pool.Transaction(ctx, func(*pypool.Worker) error {
		return pool.Transaction(ctx, func(*pypool.Worker) error {
			_, err := pool.TryCall(ctx, "duplicate_text", "busy")
			fmt.Println(errors.Is(err, pypool.ErrPoolExhausted))
			return nil
		})
	})
	out, err := pool.TryCall(ctx, "duplicate_text", "idle")
	fmt.Println(out, err)
	// Output:
	// true
	// idleidle <nil>
}

// Ping is a readiness probe: a round trip through a worker's Python runtime.
func ExamplePool_Ping() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	fmt.Println(pool.Ping(ctx))
	pool.Close(ctx)
	fmt.Println(errors.Is(pool.Ping(ctx), pypool.ErrPoolClosed))
	// Output:
	// <nil>
	// true
}

// CallBytes appends each bytes result to one buffer, reused from call to
// call: a loop over large results allocates nothing for them.
func ExampleCallBytes() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)
	var buf []byte
	for _, chunk := range []string{"ab", "xyz"} {
		var err error
		buf, err = pypool.CallBytes(ctx, pool, buf[:0], "duplicate_text", []byte(chunk))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf))
	}
	// Output:
	// abab
	// xyzxyz
}

// An Array shares the memory of the slice it is made of; its views read it
// back without copying.
func ExampleArrayOf() {
	pixels := []uint8{0, 64, 128, 255, 32, 16}
	img := pypool.ArrayOf(pixels, 2, 3) // 2 rows of 3, numpy's shape (2, 3)
	fmt.Println(img.DType, img.Shape, img.Len())

	view, err := img.Uint8s()
	if err != nil {
		log.Fatal(err)
	}
	view[0] = 1
	fmt.Println(pixels[0])

	_, err = img.Float64s()
	fmt.Println(errors.Is(err, pypool.ErrDType))
	// Output:
	// uint8 [2 3] 6
	// 1
	// true
}

// Elements are in C order: element [i][j] of a 2-d array is at
// i*Shape[1]+j.
func ExampleArray_Float64s() {
	a := pypool.ArrayOf([]float64{1, 2, 3, 4, 5, 6}, 2, 3)
	values, err := a.Float64s()
	if err != nil {
		log.Fatal(err)
	}
	i, j := 1, 0
	fmt.Println(values[i*a.Shape[1]+j])
	// Output: 4
}

// numpy arrays cross both ways. With a module that defines
//
//	def normalize(v):
//	    return v / numpy.linalg.norm(v)
//
// an Array argument arrives as a numpy.ndarray, and the ndarray returned
// decodes straight into a []float64.
func ExampleCallAs_ndarray() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{Module: "vectors"})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	unit, err := pypool.CallAs[[]float64](ctx, pool, "normalize", pypool.ArrayOf([]float64{3, 4}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(unit) // [0.6 0.8]

	// Call gives a pypool.Array for an ndarray, of any dtype and shape.
	out, err := pool.Call(ctx, "normalize", pypool.ArrayOf([]float32{1, 1, 1, 1}, 2, 2))
	if err != nil {
		log.Fatal(err)
	}
	m := out.(pypool.Array)
	fmt.Println(m.DType, m.Shape) // float32 [2 2]
}

// Decimal is Python's decimal.Decimal on the Go side, as its text.
type Decimal string

// A Go type of your own crosses as a msgpack extension type. The Python
// module registers the same code for its own type:
//
//	import decimal, pypool_runtime
//	pypool_runtime.register_ext(decimal.Decimal, 1,
//	    lambda d: str(d).encode(), lambda b: decimal.Decimal(b.decode()))
//
//	def total(prices):
//	    return sum(prices, decimal.Decimal(0))
func ExampleExt() {
	decimals := pypool.Ext(1,
		func(d Decimal) ([]byte, error) { return []byte(d), nil },
		func(b []byte) (Decimal, error) { return Decimal(b), nil })

	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "billing",
		Extensions: []pypool.Extension{decimals},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	sum, err := pypool.CallAs[Decimal](ctx, pool, "total", []any{Decimal("0.10"), Decimal("0.20")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum) // 0.30, not 0.30000000000000004
}

// Resize changes the pool's size while it runs: growing starts workers at
// once, shrinking stops idle ones at once and busy ones as they come back.
func ExamplePool_Resize() {
	ctx := context.Background()
	pool := newExamplePool(ctx) // Size 2
	defer pool.Close(ctx)
	if err := pool.Resize(4, 2); err != nil {
		log.Fatal(err)
	}
	s := pool.Stats()
	fmt.Println(s.Size, s.MaxOverflow)
	// Output: 4 2
}

// New returns when Size workers have imported the module. A module that
// fails to import makes New fail with an error wrapping ErrWorkerStart and
// the *PythonError that carries the import's traceback.
func ExampleNew() {
	ctx := context.Background()
	_, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_broken", // raises RuntimeError while it is imported
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	fmt.Println(errors.Is(err, pypool.ErrWorkerStart))
	var pyErr *pypool.PythonError
	if errors.As(err, &pyErr) {
		fmt.Println(pyErr.Code, pyErr.Type, pyErr.Message)
		// pyErr.Traceback (or fmt.Printf("%+v", pyErr)) shows the line that raised.
	}
	// Output:
	// true
	// import_failed RuntimeError pypool_broken is broken on purpose
}

// Close lets calls in flight finish until its context ends, then stops
// every worker; calls made afterwards fail with ErrPoolClosed.
func ExamplePool_Close() {
	ctx := context.Background()
	pool := newExamplePool(ctx)

	// In a service: on SIGTERM, give calls in flight 10 seconds.
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fmt.Println(pool.Close(closeCtx))

	_, err := pool.Call(ctx, "duplicate_text", "late")
	fmt.Println(errors.Is(err, pypool.ErrPoolClosed))
	fmt.Println(pool.Stats().Workers)
	// Output:
	// <nil>
	// true
	// 0
}

// A worker that dies during a call (os._exit, a segfault, the OOM killer)
// gives an error wrapping ErrWorkerCrashed; errors.As finds the
// *WorkerExitError with its exit status and last stderr lines. The pool has
// already started a replacement.
func ExampleWorkerExitError() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_testmod", // crash(status) writes to stderr, then os._exit(status)
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	_, err = pool.Call(ctx, "crash", 3)
	fmt.Println(errors.Is(err, pypool.ErrWorkerCrashed))
	var exit *pypool.WorkerExitError
	if errors.As(err, &exit) {
		fmt.Println(exit.ExitCode, exit.Signal == "")
	}

	out, err := pool.Call(ctx, "duplicate_text", "again") // on the replacement
	fmt.Println(out, err)
	// Output:
	// true
	// 3 true
	// againagain <nil>
}
