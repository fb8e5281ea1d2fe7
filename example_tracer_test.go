package pypool_test

import (
	"context"
	"fmt"
	"log"

	"github.com/pypool/pypool"
)

// callLog is a Tracer that prints the function and the outcome of every
// call as it ends. A Tracer that opens spans would start one in
// TraceCallStart, return the span's context, and end it in TraceCallEnd
// (the otel subpackage does).
type callLog struct{ prefix string }

func (callLog) TraceCallStart(ctx context.Context, _ *pypool.Pool, _ pypool.TraceCallStartData) context.Context {
	return ctx
}

func (callLog) TraceCallWorker(context.Context, *pypool.Pool, pypool.TraceCallWorkerData) {}

func (l callLog) TraceCallEnd(_ context.Context, _ *pypool.Pool, d pypool.TraceCallEndData) {
	fmt.Println(l.prefix, d.Function, d.Outcome)
}

// A Tracer set in Config.Tracer is told about every call of the pool.
func ExampleTracer() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "my_module",
		PythonPath: []string{"examples/duplicate"},
		Size:       1,
		Tracer:     callLog{prefix: "traced:"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	pool.Call(ctx, "duplicate_text", "ab")
	pool.Call(ctx, "no_such_function")
	// Output:
	// traced: duplicate_text ok
	// traced: no_such_function python_error
}

// AddTracer adds a Tracer to a running pool, after Config.Tracer: this is how
// the prometheus subpackage's collector counts the calls of the pool it is
// built from. The func it returns removes the tracer.
func ExamplePool_AddTracer() {
	ctx := context.Background()
	pool := newExamplePool(ctx)
	defer pool.Close(ctx)

	remove := pool.AddTracer(callLog{prefix: "metrics:"})
	pool.Call(ctx, "duplicate_text", "ab")
	remove()
	pool.Call(ctx, "duplicate_text", "cd") // not traced
	// Output: metrics: duplicate_text ok
}
