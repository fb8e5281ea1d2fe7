package pypool

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The Go side of a call's hot path, without Python: go test -bench . -benchmem

func BenchmarkEncodeCall(b *testing.B) {
	enc := newCallEncoder(DefaultMaxMessageSize, nil)
	args := []any{"testing"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := enc.encode(uint64(i), "duplicate_text", args, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReply(b *testing.B) {
	body, err := msgpack.Marshal([]any{kindResult, 12345, "testingtesting"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r, err := decodeReply(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := decodeValue(r.value, false, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckoutCheckin(b *testing.B) {
	pool := newTestPool(b, testConfig(b))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		proc, _, err := pool.checkout(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pool.checkin(proc)
	}
}

// BenchmarkCall is a whole trivial call, Python included.
func BenchmarkCall(b *testing.B) {
	cfg := duplicateConfig(b)
	pool := newTestPool(b, cfg)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pool.Call(ctx, "duplicate_text", "testing"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallWithDeadline is BenchmarkCall with a deadline on every call,
// as a service's request context has.
func BenchmarkCallWithDeadline(b *testing.B) {
	cfg := duplicateConfig(b)
	pool := newTestPool(b, cfg)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := pool.Call(ctx, "duplicate_text", "testing"); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}

// BenchmarkEcho echoes bytes of a few sizes through the pipes and through
// the shared memory, the result in a new slice (Call) or in one reused
// buffer (CallBytes); MB/s counts the payload once per round trip, as the
// bench program does.
func BenchmarkEcho(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 16 << 20} {
		for _, transport := range []string{"pipes", "pipes-reused-buffer", "shm", "shm-reused-buffer"} {
			b.Run(fmt.Sprintf("%s/%dKiB", transport, size>>10), func(b *testing.B) {
				cfg := testConfig(b)
				cfg.Size = 1
				cfg.SharedMemoryThreshold = -1
				if !strings.HasPrefix(transport, "pipes") {
					cfg.SharedMemoryThreshold = 1
				}
				pool := newTestPool(b, cfg)
				data := bytes.Repeat([]byte{7}, size)
				ctx := context.Background()
				b.SetBytes(int64(size))
				b.ResetTimer()
				var buf []byte
				for i := 0; i < b.N; i++ {
					var err error
					if strings.HasSuffix(transport, "reused-buffer") {
						buf, err = CallBytes(ctx, pool, buf[:0], "echo", data)
					} else {
						_, err = pool.Call(ctx, "echo", data)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkStream streams small items ([i, 16 bytes]) from a generator; one
// op is one item, and items/s is reported.
func BenchmarkStream(b *testing.B) {
	cfg := testConfig(b)
	cfg.Module = "pypool_streammod"
	pool := newTestPool(b, cfg)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for _, err := range pool.Stream(ctx, "small_items", b.N) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n != b.N {
		b.Fatalf("%d items, want %d", n, b.N)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "items/s")
}
