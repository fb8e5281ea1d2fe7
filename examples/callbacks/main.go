// Command callbacks lets Python call Go during a call (Config.Callbacks and
// call_go, as ErlPort's erlang.call): the Python code asks Go for a user,
// gets a Go error as a Python exception, and calls nest — Go calls Python
// calls Go calls Python — on the pool's one worker.
//
//	go run ./examples/callbacks
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

// User is what lookup_user returns to Python (a dict there).
type User struct {
	Name string `msgpack:"name"`
	Role string `msgpack:"role"`
}

var users = map[int64]User{1: {"Ada", "admin"}, 2: {"Grace", "operator"}}

// The module is embedded in the binary (Config.PythonFS): the built
// program runs from any directory.
//
//go:embed callback_module.py
var python embed.FS

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	var pool *pypool.Pool
	callbacks := map[string]pypool.Callback{
		// Typed: Python passes one int, gets a dict.
		"lookup_user": pypool.CallbackFunc(func(ctx context.Context, id int64) (User, error) {
			u, ok := users[id]
			if !ok {
				return User{}, fmt.Errorf("no user %d", id)
			}
			return u, nil
		}),
		// A call made with the callback's ctx runs on the waiting worker.
		"again": func(ctx context.Context, args []any) (any, error) {
			return pool.Call(ctx, "countdown", args[0])
		},
	}
	pool, err := pypool.New(ctx, pypool.Config{
		Module:    "callback_module",
		PythonFS:  python,
		Size:      1, // nested callbacks need no second worker
		Callbacks: callbacks,
	})
	if err != nil {
		return err
	}
	defer pool.Close(context.Background())

	for _, id := range []int64{1, 2, 3} {
		greeting, err := pool.Call(ctx, "greet", id)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, greeting)
	}
	steps, err := pool.Call(ctx, "countdown", 3)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, steps)
	return nil
}
