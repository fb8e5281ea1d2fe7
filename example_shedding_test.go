package pypool_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pypool/pypool"
)

// NoWait makes any call form shed load: here CallAs in an HTTP handler.
// With every worker busy (and no room for an overflow worker) the call
// fails at once with ErrPoolExhausted, and the handler answers 503; with a
// worker free it is served as usual.
func ExampleNoWait() {
	ctx := context.Background()
	pool := newExamplePool(ctx) // Size 2, no overflow
	defer pool.Close(ctx)

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		out, err := pypool.CallAs[string](pypool.NoWait(ctx), pool, "duplicate_text", r.URL.Query().Get("text"))
		switch {
		case errors.Is(err, pypool.ErrPoolExhausted):
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			fmt.Fprint(w, out)
		}
	})
	get := func(text string) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", "/duplicate?text="+text, nil))
		fmt.Println(rec.Code, rec.Body.String())
	}

	get("ab")
	_ = pool.Transaction(ctx, func(*pypool.Worker) error { // both workers busy
		return pool.Transaction(ctx, func(*pypool.Worker) error {
			get("cd")
			return nil
		})
	})
	// Output:
	// 200 abab
	// 503 busy
}

// With Config.MaxWaiting set to NoWaiting, every call on the pool sheds
// load as one with NoWait does, whatever its form: no caller ever queues.
func ExampleNoWaiting() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "my_module",
		PythonPath: []string{"examples/duplicate"},
		Size:       1,
		MaxWaiting: pypool.NoWaiting,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	_ = pool.Transaction(ctx, func(*pypool.Worker) error { // the one worker busy
		_, err := pool.Call(ctx, "duplicate_text", "x")
		fmt.Println(errors.Is(err, pypool.ErrPoolExhausted))
		return nil
	})
	out, err := pool.Call(ctx, "duplicate_text", "x")
	fmt.Println(out, err, pool.Stats().Rejections)
	// Output:
	// true
	// xx <nil> 1
}
