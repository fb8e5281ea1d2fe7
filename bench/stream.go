package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/pypool/pypool"
)

// stream measures Pool.Stream: a generator yields small items ([i, 16
// bytes]) that a Go loop consumes, in items/s (a round's items over its
// duration), with the interpreter of -python and, when /usr/bin/python3
// has the msgpack C extension, with that one too. The floor for a
// comparison is the trivial call: one item per call (latency scenario).
func (b *bench) stream(ctx context.Context) {
	items := 1_000_000
	if b.sizes.rounds < 5 { // -quick
		items = 100_000
	}
	pythons := []struct{ name, path string }{{"pypool " + b.python, b.python}}
	if b.python != "/usr/bin/python3" && exec.Command("/usr/bin/python3", "-c", "import msgpack._cmsgpack").Run() == nil {
		pythons = append(pythons, struct{ name, path string }{"pypool /usr/bin/python3 (msgpack-c)", "/usr/bin/python3"})
	}
	for _, py := range pythons {
		p, err := pypool.New(ctx, pypool.Config{Module: "bench_module", PythonPath: []string{b.dir}, Python: py.path, Size: 1})
		must(0, err)
		var xs []float64
		for range b.sizes.rounds {
			start := time.Now()
			n := 0
			for item, err := range pypool.StreamAs[[]any](ctx, p, "small_items", items) {
				must(0, err)
				if len(item) != 2 {
					must(0, fmt.Errorf("item %d is %v", n, item))
				}
				n++
			}
			if n != items {
				must(0, fmt.Errorf("%d items, want %d", n, items))
			}
			xs = append(xs, float64(n)/time.Since(start).Seconds())
		}
		p.Close(context.Background())
		b.add(figure("stream", py.name, fmt.Sprintf("%d small items", items), "items/s", xs, nil))
	}
}
