package pypool

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff of worker starts after failures: a crash loop sleeps instead of
// burning CPU.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 5 * time.Second
	// quickDeath: a worker that dies by itself this soon after its start,
	// before it served a call, counts as a failed start for the backoff.
	quickDeath = 2 * time.Second
)

// startBackoff tracks failed worker starts and workers that die young, and
// says how long the next start must wait.
//
// A failure is fatal only on positive knowledge that it will happen again if
// retried at once (isFatalStart): the module failed to import, its set-up
// raised, the interpreter is missing or refuses to run. Callers then get the
// error at once instead of waiting for a start; the supervisor goes on
// retrying after the delay, so the pool heals when the cause goes away. Any
// other failure (out of descriptors, processes or memory, a signal, a
// timeout) says nothing about the module: it only lengthens the delay, once
// per wave of starts that fail together.
type startBackoff struct {
	mu       sync.Mutex
	streak   int       // failures since the last successful call
	last     error     // the last failed start; nil after a successful start
	fatal    bool      // last is fatal
	retryAt  time.Time // no start before this time
	bumpedAt time.Time // when streak last grew

	failing atomic.Bool // streak > 0: read on every call
}

// failedStart records a start that began at begun and failed, and reports
// whether the failure is fatal. Starts that began before the last recorded
// failure (they ran side by side with it) do not lengthen the delay again:
// a moment of weather that fails five parallel starts is one failure.
func (b *startBackoff) failedStart(err error, begun time.Time) (fatal bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !begun.Before(b.bumpedAt) {
		b.bump()
	}
	b.last = err
	b.fatal = isFatalStart(err)
	return b.fatal
}

// diedYoung records a worker that died by itself soon after its start.
func (b *startBackoff) diedYoung() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bump()
}

func (b *startBackoff) bump() {
	b.streak++
	b.failing.Store(true)
	delay := backoffMin << min(b.streak-1, 10)
	b.bumpedAt = time.Now()
	b.retryAt = b.bumpedAt.Add(min(delay, backoffMax))
}

// retryBefore reports whether a start retried after the delay may still
// serve a caller whose deadline is deadline (zero: none): the retry begins
// before it, and the failures have not yet gone on for so long that the
// delay reached backoffMax (then a caller without a deadline would wait
// for a cause that does not go away).
func (b *startBackoff) retryBefore(deadline time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.streak > 0 && backoffMin<<min(b.streak-1, 10) >= backoffMax {
		return false
	}
	return deadline.IsZero() || b.retryAt.Before(deadline)
}

// started records a successful start.
func (b *startBackoff) started() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.fatal = nil, false
}

// callSucceeded ends the backoff: the workers work.
func (b *startBackoff) callSucceeded() {
	if !b.failing.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streak, b.retryAt = 0, time.Time{}
	b.failing.Store(false)
}

// refusal returns the error a caller gets instead of starting a worker: the
// last failure while it is fatal and the delay runs. nil: start one.
func (b *startBackoff) refusal() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fatal && time.Now().Before(b.retryAt) {
		return b.last
	}
	return nil
}

// delay returns how long the next start must wait.
func (b *startBackoff) delay() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Until(b.retryAt)
}

// isFatalStart reports whether a start error is known to repeat if retried
// at once: the module failed to import or its set-up raised (a
// *PythonError), or the interpreter cannot run (fatalStart). Anything else
// is transient: no descriptors, processes or memory for the moment, a
// fork server's fork error, a worker that died, was killed or timed out
// during its handshake.
func isFatalStart(err error) bool {
	var pyErr *PythonError
	var fatal *fatalStart
	return errors.As(err, &pyErr) || errors.As(err, &fatal)
}

// fatalStart marks a start error that will repeat whatever the moment: the
// interpreter is missing, may not be run, or refuses to (an unsupported
// Python), or its handshake is not one this package speaks. Its message is
// err's.
type fatalStart struct{ err error }

func (e *fatalStart) Error() string { return e.err.Error() }

// Unwrap returns the error it marks.
func (e *fatalStart) Unwrap() error { return e.err }
