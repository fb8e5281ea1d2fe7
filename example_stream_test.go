package pypool_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/pypool/pypool"
)

// streamPool is a pool of the stream test module, quiet.
func streamPool(ctx context.Context, callbacks map[string]pypool.Callback) *pypool.Pool {
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_streammod", // numbers(n) yields 0..n-1, records(n) dicts
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Callbacks:  callbacks,
	})
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

// A Python generator iterated from Go: the items arrive as they are
// produced; breaking out closes the generator.
func ExamplePool_Stream() {
	ctx := context.Background()
	pool := streamPool(ctx, nil)
	defer pool.Close(ctx)

	for item, err := range pool.Stream(ctx, "numbers", 1_000_000) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(item)
		if item == int64(2) {
			break // numbers' generator is closed in Python
		}
	}
	// Output:
	// 0
	// 1
	// 2
}

// StreamAs decodes each item into a Go type.
func ExampleStreamAs() {
	ctx := context.Background()
	pool := streamPool(ctx, nil)
	defer pool.Close(ctx)

	type Record struct {
		ID   int    `msgpack:"id"`
		Name string `msgpack:"name"`
	}
	for r, err := range pypool.StreamAs[Record](ctx, pool, "records", 2) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%+v\n", r)
	}
	// Output:
	// {ID:0 Name:item 0}
	// {ID:1 Name:item 1}
}

// Inside a transaction, a stream runs on the transaction's worker.
func ExampleWorker_Stream() {
	ctx := context.Background()
	pool := streamPool(ctx, nil)
	defer pool.Close(ctx)

	err := pool.Transaction(ctx, func(w *pypool.Worker) error {
		var sum int64
		for n, err := range pypool.StreamAs[int64](ctx, w, "numbers", 5) {
			if err != nil {
				return err
			}
			sum += n
		}
		fmt.Println(sum)
		return nil
	})
	fmt.Println(err)
	// Output:
	// 10
	// <nil>
}

// Python calls Go: asks_go(name, *args) runs call_go(name, *args) in
// Python. The Go function's error is a pypool.GoError there.
func ExampleCallback() {
	ctx := context.Background()
	pool := streamPool(ctx, map[string]pypool.Callback{
		"add": func(ctx context.Context, args []any) (any, error) {
			return args[0].(int64) + args[1].(int64), nil
		},
		"fail": func(ctx context.Context, args []any) (any, error) {
			return nil, fmt.Errorf("not today")
		},
	})
	defer pool.Close(ctx)

	sum, err := pool.Call(ctx, "asks_go", "add", 2, 3)
	fmt.Println(sum, err)
	_, err = pool.Call(ctx, "asks_go", "fail")
	fmt.Println(err)
	// Output:
	// 5 <nil>
	// pypool: python pypool.GoError: not today (Go *errors.errorString)
}

// CallbackFunc gives a callback a typed argument and result.
func ExampleCallbackFunc() {
	type User struct {
		Name string `msgpack:"name"`
	}
	ctx := context.Background()
	pool := streamPool(ctx, map[string]pypool.Callback{
		"lookup_user": pypool.CallbackFunc(func(ctx context.Context, id int64) (User, error) {
			return User{Name: fmt.Sprintf("user %d", id)}, nil
		}),
	})
	defer pool.Close(ctx)

	user, err := pool.Call(ctx, "asks_go", "lookup_user", 42)
	fmt.Println(user, err)
	// Output:
	// map[name:user 42] <nil>
}
