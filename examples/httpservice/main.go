// Command httpservice is an HTTP service that answers each request with a
// Python call, the way pypool is meant to run in production:
//
//   - GET /duplicate?text=ab calls duplicate("ab") in Python under a
//     per-request deadline (-request-timeout; a client that goes away
//     cancels the call too) and answers "abab". delay_ms=N makes Python
//     sleep N ms first, to try deadlines and saturation by hand.
//   - The call is made with CallAs and pypool.NoWait, the option with which
//     any call form sheds load: when every worker is busy the request is
//     answered 503 with Retry-After at once, instead of queueing behind the
//     others until its deadline. Every request of this service sheds, so
//     none waits ahead of another (docs/operating.md, "Deadlines and
//     shedding in a service", says why mixing the two on one pool starves
//     the ones that shed). A deadline hit while
//     Python runs gives 504, a Python exception 500.
//   - GET /readyz answers from Pool.Ping: 200 when a worker answers a round
//     trip in time, 503 otherwise (and from the start of shutdown on).
//   - GET /metrics serves the pool's metrics in the Prometheus text format,
//     through the collector of github.com/pypool/pypool/prometheus
//     (pypool_size, pypool_workers{state}, pypool_calls_total, ...).
//   - Its Python module (python/service_module.py) is embedded in the
//     binary (Config.PythonFS), so the binary runs from any directory:
//     deploy it as one file plus a python3.
//   - On SIGTERM (or Ctrl-C) it stops accepting connections, lets requests
//     in flight finish (-shutdown-timeout), then closes the pool, which
//     stops every Python worker.
//
// It is a module of its own (go.mod beside this file), so that pypool's
// root module does not depend on client_golang. Run it and try it:
//
//	cd examples/httpservice && go run . -addr localhost:8080
//	curl 'localhost:8080/duplicate?text=ab'
//	curl -i localhost:8080/readyz
//	curl localhost:8080/metrics
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/pypool/pypool"
	pypoolprom "github.com/pypool/pypool/prometheus"
)

// python holds the service's Python code, written to the install directory
// at start (Config.PythonFS). all: keeps files whose names start with _ or .
// (a package's __init__.py) that a plain directory pattern leaves out.
//
//go:embed all:python
var python embed.FS

// config holds the service's settings, set by flags.
type config struct {
	Addr            string        // where to listen; port 0 picks a free one
	Size            int           // Python workers kept running
	MaxOverflow     int           // extra workers under load
	RequestTimeout  time.Duration // per-request deadline of the Python call
	ShutdownTimeout time.Duration // how long requests in flight may take to finish at shutdown
	Logger          *slog.Logger
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Addr, "addr", "localhost:8080", "listen address")
	flag.IntVar(&cfg.Size, "size", runtime.NumCPU(), "Python workers kept running")
	flag.IntVar(&cfg.MaxOverflow, "max-overflow", 0, "extra Python workers under load")
	flag.DurationVar(&cfg.RequestTimeout, "request-timeout", 2*time.Second, "deadline of each request's Python call")
	flag.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "time given to requests in flight at shutdown")
	flag.Parse()
	cfg.Logger = slog.Default()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, cfg, func(addr string) { fmt.Printf("listening on %s\n", addr) })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped")
}

// run starts the pool and the HTTP server, calls started with the address
// it listens on, serves until ctx ends, then shuts down gracefully: the
// server first (requests in flight finish), the pool last. A ctx that ends
// while the pool starts is a stop, not a failure: run returns nil.
func run(ctx context.Context, cfg config, started func(addr string)) error {
	pool, err := pypool.New(ctx, pypool.Config{
		Module:       "service_module",
		PythonFS:     python,   // the Python code travels inside the binary
		PythonFSRoot: "python", // the directory of the FS that goes on sys.path
		Size:         cfg.Size,
		MaxOverflow:  cfg.MaxOverflow,
		// Keep overflow workers through a burst instead of paying a Python
		// start for each request that needs one.
		OverflowIdleTimeout: 30 * time.Second,
		Logger:              cfg.Logger,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped (SIGTERM) while the workers started: nothing to shut down
		}
		return err
	}
	defer pool.Close(context.Background()) // on early returns; the shutdown below closes it first

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(pypoolprom.NewCollector(pool, pypoolprom.Opts{Pool: "service_module"}))
	s := &service{pool: pool, timeout: cfg.RequestTimeout, metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	started(ln.Addr().String())

	select {
	case err := <-served: // the server failed on its own
		return err
	case <-ctx.Done():
	}
	// Graceful shutdown: stop answering ready, stop accepting, let requests
	// in flight end, then stop the Python workers.
	s.draining.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	errShutdown := srv.Shutdown(shutdownCtx)
	errClose := pool.Close(shutdownCtx)
	return errors.Join(errShutdown, errClose)
}

// service holds what the handlers share.
type service struct {
	pool     *pypool.Pool
	timeout  time.Duration
	metrics  http.Handler // the registry holding the pool's collector, in the Prometheus text format
	draining atomic.Bool
}

func (s *service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /duplicate", s.duplicate)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics)
	return mux
}

// duplicate answers one request with one Python call.
func (s *service) duplicate(w http.ResponseWriter, r *http.Request) {
	delay, _ := strconv.Atoi(r.URL.Query().Get("delay_ms"))
	// The request's context ends when the client goes away; the deadline
	// bounds the call. Either one interrupts Python.
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	out, err := pypool.CallAs[string](pypool.NoWait(ctx), s.pool, "duplicate", r.URL.Query().Get("text"), delay)
	if err != nil {
		status, msg := httpError(err)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, msg, status)
		return
	}
	fmt.Fprintln(w, out)
}

// httpError maps a call's error to an HTTP status and a message for the
// client. Tracebacks stay in the server's log.
func httpError(err error) (int, string) {
	var pyErr *pypool.PythonError
	switch {
	case errors.Is(err, pypool.ErrPoolExhausted):
		return http.StatusServiceUnavailable, "busy: every Python worker is in use, retry later"
	case errors.Is(err, pypool.ErrPoolClosed):
		return http.StatusServiceUnavailable, "shutting down"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "the Python call did not finish in time"
	case errors.Is(err, context.Canceled):
		return 499, "client closed request" // nobody reads it; nginx's code, for the logs
	case errors.As(err, &pyErr):
		return http.StatusInternalServerError, "python " + pyErr.Type + ": " + pyErr.Message
	}
	return http.StatusInternalServerError, err.Error()
}

// readyz is the readiness probe: a worker must answer a round trip within
// a second. Ping takes a worker as a call does, so a pool saturated for
// longer than that reports not ready and the load balancer sends traffic
// elsewhere until it drains; a liveness probe must not use it.
func (s *service) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}
