// Command typed calls a Python module through typed Go bindings that
// cmd/pypoolgen wrote from its type hints: inventory_gen.go, from
// inventory.py. No function name is a string here and no result is an
// any: a renamed Python function or a changed parameter breaks the build
// (or, in CI, `pypoolgen -check`) instead of a call in production.
//
//	go run ./examples/typed
//	go generate ./examples/typed   # after a change to inventory.py
package main

//go:generate go run ../../cmd/pypoolgen -module inventory -out inventory_gen.go -pythonpath .

import (
	"context"
	"embed"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/pypool/pypool"
)

//go:embed inventory.py
var python embed.FS

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	pool, err := pypool.New(ctx, pypool.Config{Module: "inventory", PythonFS: python, Size: 1})
	if err != nil {
		return err
	}
	defer pool.Close(context.Background())

	item, err := Lookup(ctx, pool, "B-2") // (*Item, error): Optional[Item]
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %d %s\n", item.Sku, item.Count, item.Name)
	missing, err := Lookup(ctx, pool, "Z-9")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Z-9 found: %v\n", missing != nil)

	// A keyword-only parameter with a default: through RestockOptions.
	note := "weekly order"
	count, err := Restock(ctx, pool, "C-3", 10, &RestockOptions{Note: &note})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "C-3 restocked: %d\n", count)

	low, err := LowStock(ctx, pool, nil) // threshold left to Python's default
	if err != nil {
		return err
	}
	for _, item := range low {
		fmt.Fprintf(out, "low: %s (%d)\n", item.Sku, item.Count)
	}

	// A generator: a typed stream.
	for sku, err := range Skus(ctx, pool) {
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "sku %s\n", sku)
	}
	return nil
}
