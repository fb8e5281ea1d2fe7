// Command streaming iterates Python generators from Go with Pool.Stream and
// pypool.StreamAs: items arrive as Python produces them, a loop may stop
// early (the generator is closed, its finally runs), and Python never runs
// far ahead of a slow loop.
//
//	go run ./examples/streaming
package main

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

// Square is one record of the squares generator.
type Square struct {
	N      int `msgpack:"n"`
	Square int `msgpack:"square"`
}

// The module is embedded in the binary (Config.PythonFS): the built
// program runs from any directory.
//
//go:embed stream_module.py
var python embed.FS

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	pool, err := pypool.New(ctx, pypool.Config{
		Module:   "stream_module",
		PythonFS: python,
		Size:     1,
	})
	if err != nil {
		return err
	}
	defer pool.Close(context.Background())

	// Each word is printed as soon as Python yields it.
	start := time.Now()
	for word, err := range pool.Stream(ctx, "words", "streamed one word at a time", 0.05) {
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%-6s (after %v)\n", word, time.Since(start).Round(10*time.Millisecond))
	}

	// Typed items; breaking out closes the generator in Python.
	for sq, err := range pypool.StreamAs[Square](ctx, pool, "squares", 1_000_000) {
		if err != nil {
			return err
		}
		if sq.Square > 50 {
			break
		}
		fmt.Fprintf(out, "%d^2 = %d\n", sq.N, sq.Square)
	}
	// The worker is back in the pool, healthy.
	n := 0
	for range pool.Stream(ctx, "squares", 100_000) {
		n++
	}
	fmt.Fprintf(out, "streamed %d records\n", n)
	return nil
}
