package pypool

import (
	"context"
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
// A failure is fatal when it will happen again if retried at once: the module
// failed to import, or the interpreter is missing. Callers then get the
// error at once instead of waiting for a start; the supervisor goes on
// retrying after the delay, so the pool heals when the cause goes away. Any
// other failure (a signal, a timeout) says nothing about the module: it only
// lengthens the delay.
type startBackoff struct {
	mu      sync.Mutex
	streak  int       // failures since the last successful call
	last    error     // the last failed start; nil after a successful start
	fatal   bool      // last is fatal
	retryAt time.Time // no start before this time

	failing atomic.Bool // streak > 0: read on every call
}

// failedStart records a failed start and reports whether it is fatal.
func (b *startBackoff) failedStart(err error) (fatal bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bump()
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
	b.retryAt = time.Now().Add(min(delay, backoffMax))
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

// isFatalStart reports whether a start error will repeat if retried at once:
// the module failed to import, or the interpreter could not be run.
// A worker that died or timed out during its handshake may start next time.
func isFatalStart(err error) bool {
	var pyErr *PythonError
	var exitErr *WorkerExitError
	switch {
	case errors.As(err, &pyErr):
		return true
	case errors.As(err, &exitErr), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}
