package pypool

// audit_newcomer3_test.go: a third newcomer, building another shape from
// README.md and docs/ alone: a batch job, a command-line program that
// reads a file through a generator (Stream, StreamAs), turns each record
// into numpy results and bytes (CallAs, CallBytes), exits with a status
// that tells a Python error apart, and stops on Ctrl-C (its context,
// from signal.NotifyContext, cancelled mid-run). Each test runs what the
// documentation says and checks that it holds, or that the error names
// the cause and the fix.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewcomer3StreamEndsAtTheItemAfterItsContext: Pool.Stream's "ctx
// bounds the whole loop ...: when it ends, the loop ends with ctx's error"
// (stream.go, docs/streaming-and-callbacks.md). A batch job's Ctrl-C
// cancels its context while the loop's body writes record 10; the loop
// went on giving the body the rest of the frame Python had sent (246 more
// records of a fast generator: a frame holds up to 256) before it ended
// with context.Canceled; with a deadline, likewise, records after it.
// Now the next iteration after the context ended gives its error, for
// Stream and StreamAs, cancelled or past its deadline, and the worker,
// interrupted as a cut-off call's, serves on.
func TestNewcomer3StreamEndsAtTheItemAfterItsContext(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, streamConfig(t))
	type loop func(ctx context.Context, body func(item any) bool) error
	forms := map[string]loop{
		"Stream": func(ctx context.Context, body func(any) bool) error {
			for item, err := range pool.Stream(ctx, "numbers", 100_000) {
				if err != nil {
					return err
				}
				if !body(item) {
					return nil
				}
			}
			return nil
		},
		"StreamAs": func(ctx context.Context, body func(any) bool) error {
			for item, err := range StreamAs[int](ctx, pool, "numbers", 100_000) {
				if err != nil {
					return err
				}
				if !body(item) {
					return nil
				}
			}
			return nil
		},
	}
	for name, run := range forms {
		for _, how := range []string{"cancelled", "deadline"} {
			ctx, cancel := context.WithCancel(testCtx(t))
			want := context.Canceled
			if how == "deadline" {
				ctx, cancel = context.WithTimeout(testCtx(t), 200*time.Millisecond)
				want = context.DeadlineExceeded
			}
			n, after := 0, 0
			err := run(ctx, func(any) bool {
				if ctx.Err() != nil {
					after++ // the body saw the context end at an earlier item
					return after < 300
				}
				if n++; n == 10 {
					if how == "cancelled" {
						cancel() // Ctrl-C while the body handles record 10
					} else {
						<-ctx.Done()
					}
				}
				return true
			})
			cancel()
			assert.ErrorIs(t, err, want, "%s %s", name, how)
			assert.Zero(t, after, "%s %s: items given to the loop after its context ended", name, how)
			assert.LessOrEqual(t, n, 10, "%s %s", name, how)
		}
	}
	require.NoError(t, pool.Ping(testCtx(t)))
	assert.Zero(t, pool.Stats().Crashes, "a cut-off stream's worker is interrupted, not lost")
}
