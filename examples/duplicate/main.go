// Command duplicate is pypool's first example: it starts a pool of Python
// workers that import my_module.py and calls duplicate_text("testing").
//
// my_module.py is embedded in the binary (Config.PythonFS), so the built
// program runs from any directory, with no Python file beside it:
//
//	go run ./examples/duplicate
//	go build -o /tmp/duplicate ./examples/duplicate && cd / && /tmp/duplicate
package main

import (
	"context"
	"embed"
	"fmt"
	"log"
	"time"

	"github.com/pypool/pypool"
)

//go:embed my_module.py
var python embed.FS

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	pool, err := pypool.New(ctx, pypool.Config{
		Module:   "my_module",
		PythonFS: python,
		Size:     2,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	out, err := pool.Call(ctx, "duplicate_text", "testing")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
}
