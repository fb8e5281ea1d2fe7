package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/pypool/pypool"
)

// arraySize is the float64 array of the array scenario: 64 MiB.
const arraySize = 64 << 20

// array measures the round trip of a 64 MiB float64 array, Go -> numpy ->
// Go, in MB/s (the array's size over a round's median round trip): sent as
// a pypool.Array, it arrives in Python as a numpy.ndarray and comes back
// as a pypool.Array, through the shared memory. It needs numpy in the
// interpreter: -python's if it has it, else /usr/bin/python3 (Debian's
// python3-numpy); without either the scenario says so and is skipped.
// There is no floor: the target is absolute (1 GB/s).
func (b *bench) array(ctx context.Context) {
	python := numpyPython(b.python)
	if python == "" {
		fmt.Fprintln(os.Stderr, "array scenario skipped: neither", b.python, "nor /usr/bin/python3 imports numpy (apt-get install python3-numpy)")
		return
	}
	p, err := pypool.New(ctx, pypool.Config{
		Module: "bench_module", PythonPath: []string{b.dir}, Python: python,
		Size: 1, MaxMessageSize: arraySize + 1<<20,
	})
	must(0, err)
	defer p.Close(context.Background())
	values := make([]float64, arraySize/8)
	for i := range values {
		values[i] = float64(i)
	}
	arg := pypool.ArrayOf(values)
	roundTrip := func() time.Duration {
		start := time.Now()
		out, err := pypool.CallAs[pypool.Array](ctx, p, "echo", arg)
		elapsed := time.Since(start)
		must(0, err)
		if got, err := out.Float64s(); err != nil || len(got) != len(values) || got[len(got)-1] != values[len(values)-1] {
			must(0, fmt.Errorf("the array came back wrong: %v", err))
		}
		return elapsed
	}
	roundTrip() // warm-up: the shared memory grows to its size
	var xs []float64
	for range b.sizes.rounds {
		times := make([]time.Duration, b.sizes.arrayCalls)
		for i := range times {
			times[i] = roundTrip()
		}
		xs = append(xs, float64(arraySize)/1e6/median(times).Seconds())
	}
	b.add(figure("array", "pypool", "64 MiB float64", "MB/s", xs, nil))
}

// numpyPython returns an interpreter that imports numpy: python, else
// /usr/bin/python3, else "".
func numpyPython(python string) string {
	for _, candidate := range []string{python, "/usr/bin/python3"} {
		if exec.Command(candidate, "-c", "import numpy").Run() == nil {
			return candidate
		}
	}
	return ""
}
