// Command duplicate is pypool's first example: it starts a pool of Python
// workers that import my_module.py (beside this file) and calls
// duplicate_text("testing").
//
//	go run ./examples/duplicate
package main

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pypool/pypool"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "my_module",
		PythonPath: []string{sourceDir()},
		Size:       2,
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

// sourceDir returns the directory of this file, where my_module.py is, so
// that the example runs from any working directory.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(file)
}
