// Command reload is an HTTP service whose Python code is deployed as files
// on disk and reloaded without a restart and without a failed request
// (docs/reloading.md):
//
//   - GET /greet?name=ada calls greet("ada") in reload_module.py.
//   - On SIGHUP it calls Pool.Reload: every worker is replaced by one that
//     imported the module as it is on disk now (and ran its set-up), a new
//     one proven before an old one is retired, busy ones when their request
//     is done. A broken edit (a syntax error, a set-up that raises) is
//     reported with its traceback and the workers that serve keep serving.
//   - On SIGTERM (or Ctrl-C) it stops, closing the pool.
//
// Build it, run it from this directory, edit GREETING and reload (built
// first: the job of "go run ." is go run itself, which a SIGHUP ends,
// leaving the service running without it):
//
//	cd examples/reload && go build -o /tmp/reload-demo .
//	/tmp/reload-demo -addr localhost:8081 &
//	curl 'localhost:8081/greet?name=ada'     # Hello, ada!
//	sed -i 's/"Hello"/"Bonjour"/' reload_module.py
//	kill -HUP %1                              # or: kill -HUP <the pid it logs>
//	curl 'localhost:8081/greet?name=ada'     # Bonjour, ada!
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pypool/pypool"
)

func main() {
	addr := flag.String("addr", "localhost:8081", "address to listen on")
	dir := flag.String("dir", ".", "directory of reload_module.py")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s; send SIGHUP to pid %d to reload", ln.Addr(), os.Getpid())
	if err := run(ctx, ln, *dir, hup, slog.Default()); err != nil {
		log.Fatal(err)
	}
}

// run serves on ln until ctx ends, with a pool of dir's reload_module.py,
// reloading it at every value of reloads.
func run(ctx context.Context, ln net.Listener, dir string, reloads <-chan os.Signal, logger *slog.Logger) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "reload_module",
		SetUp:      "setup",
		PythonPath: []string{dir},
		Size:       2,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	defer pool.Close(context.Background())

	// The reloads end with run (a reload under way is stopped): a SIGHUP
	// after it would reload a closed pool, and the goroutine would
	// outlive the pool.
	ctx, cancel := context.WithCancel(ctx)
	reloader := make(chan struct{})
	defer func() { cancel(); <-reloader }()
	go func() {
		defer close(reloader)
		for {
			select {
			case <-ctx.Done():
				return
			case <-reloads:
				reload(ctx, pool, logger)
			}
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /greet", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		greeting, err := pypool.CallAs[string](ctx, pool, "greet", r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, greeting)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// reload replaces the pool's workers by ones of the code on disk now, and
// logs how it went: a broken version's traceback, or the new generation.
func reload(ctx context.Context, pool *pypool.Pool, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	began := time.Now()
	err := pool.Reload(ctx)
	var pyErr *pypool.PythonError
	switch {
	case errors.As(err, &pyErr):
		logger.Error("reload: the new code does not start; the old workers serve on",
			"error", pyErr.Error(), "traceback", pyErr.Traceback)
	case err != nil:
		logger.Error("reload failed; the workers serve on", "error", err)
	default:
		logger.Info("reloaded", "generation", pool.Stats().Generation, "took", time.Since(began).Round(time.Millisecond))
	}
}
