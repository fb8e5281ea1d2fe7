package pypool_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/pypool/pypool"
)

// ExampleStartMethod starts the workers from a fork server: one template
// process imports the module (and Config.Preload) once, and every worker,
// the first ones as well as replacements and overflow workers, is forked
// from it, ready in about a millisecond whatever the module's import costs
// (with Size 1, New's worker is started by exec before the template, and
// replaced by a forked one after its first call).
// Outside Linux the pool logs why and starts each worker as its own python3.
func ExampleStartMethod() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:      "pypool_testmod",
		PythonPath:  []string{"testdata/pymod"},
		Size:        2,
		StartMethod: pypool.StartForkServer,
		Preload:     []string{"json"}, // imported once, by the template
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	out, err := pool.Call(ctx, "duplicate_text", "forked")
	fmt.Println(out, err)
	// Output:
	// forkedforked <nil>
}
