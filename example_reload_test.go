package pypool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pypool/pypool"
)

// ExamplePool_Reload puts a new version of a module on disk live without
// restarting the pool: every worker is replaced, a new one proven before an
// old one is retired, and no call fails. A broken version is refused with
// its traceback, and the workers that serve keep serving.
func ExamplePool_Reload() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "reload-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	deploy := func(code string) {
		if err := os.WriteFile(filepath.Join(dir, "greeter.py"), []byte(code), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	deploy("def greet(name):\n    return 'Hello, ' + name\n")

	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "greeter",
		PythonPath: []string{dir},
		Size:       2,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)
	fmt.Println(pypool.CallAs[string](ctx, pool, "greet", "ada"))

	deploy("def greet(name):\n    return 'Bonjour, ' + name\n")
	if err := pool.Reload(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(pypool.CallAs[string](ctx, pool, "greet", "ada"))

	deploy("def greet(name):\n    return 'Hola, ' + name\nraise RuntimeError('not ready')\n")
	err = pool.Reload(ctx)
	var pyErr *pypool.PythonError
	fmt.Println(errors.As(err, &pyErr), pyErr.Message)
	fmt.Println(pypool.CallAs[string](ctx, pool, "greet", "ada"))
	// Output:
	// Hello, ada <nil>
	// Bonjour, ada <nil>
	// true not ready
	// Bonjour, ada <nil>
}
