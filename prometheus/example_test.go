package prometheus_test

import (
	"context"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/pypool/pypool"
	pypoolprom "github.com/pypool/pypool/prometheus"
)

// A service exports its pool's metrics on /metrics.
func ExampleNewCollector() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{Module: "my_module", Size: 4, MaxOverflow: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	reg := prometheus.NewRegistry()
	reg.MustRegister(pypoolprom.NewCollector(pool, pypoolprom.Opts{Pool: "my_module", MaxFunctions: 20}))
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log.Fatal(http.ListenAndServe(":9090", nil))
}

// A collector that is no longer wanted (a reload of the metrics set-up) is
// unregistered and closed, so that the one made in its place is the only
// one told of the pool's calls.
func ExampleCollector_Close() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{Module: "my_module"})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	reg := prometheus.NewRegistry()
	old := pypoolprom.NewCollector(pool, pypoolprom.Opts{Pool: "my_module"})
	reg.MustRegister(old)

	// The reload: the old collector goes, a new one with other buckets comes.
	reg.Unregister(old)
	old.Close()
	reg.MustRegister(pypoolprom.NewCollector(pool, pypoolprom.Opts{Pool: "my_module", CallBuckets: []float64{.01, .1, 1}}))
}
