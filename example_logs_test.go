package pypool_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/pypool/pypool"
)

// Config.StackDumps chooses which Python stacks the pool logs. With the
// default, StackDumpsSlow, a call cut off by its deadline that obeys its
// KeyboardInterrupt is routine: one Debug record, no stack, so a logger
// at level Info stays quiet however many deadlines pass. (StackDumpsAll
// would log the stack of each, rate-limited per function.)
func ExampleStackDumpPolicy() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // a stable output
			}
			return a
		},
	}))
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_testmod",
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
		Logger:     logger,
		StackDumps: pypool.StackDumpsSlow, // the default: stacks of slow or killed calls only
		// An answer after half of InterruptGrace is slow, and warns with its
		// stack: a long grace keeps this output stable on a busy machine.
		InterruptGrace: 10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	for range 3 {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := pool.Call(ctx, "sleep", 10)
		cancel()
		fmt.Println(errors.Is(err, context.DeadlineExceeded))
	}
	out, _ := pool.Call(ctx, "echo", "still here")
	fmt.Println(out)
	// Output:
	// true
	// true
	// true
	// still here
}
