package pypool_test

import (
	"context"
	"errors"
	"fmt"
	"log"

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
