package pypool_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/pypool/pypool"
)

// Functions lists what the module offers, with the signatures and type
// hints Python sees: for start-up checks, and for cmd/pypoolgen.
func ExamplePool_Functions() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "inventory",
		PythonPath: []string{"examples/typed"},
		Size:       1,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	functions, err := pool.Functions(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range functions {
		if f.Class {
			continue // Item, the TypedDict: callable, but not a function
		}
		var params []string
		for _, p := range f.Params {
			s := p.Name + ": " + p.Hint.String()
			if p.Kind == pypool.ParamKeywordOnly {
				s = "*, " + s
			}
			if p.HasDefault {
				s += " = " + p.Default
			}
			params = append(params, s)
		}
		fmt.Printf("%s(%s) -> %s\n", f.Name, strings.Join(params, ", "), f.Result)
	}
	// Output:
	// lookup(sku: str) -> Optional[Item]
	// restock(sku: str, count: int, *, note: str = '') -> int
	// low_stock(threshold: int = 5) -> list[Item]
	// skus() -> Iterator[str]
}
