//go:build linux

package pypool

// Tests of Config.Limits.AddressSpace at a worker's start, with and
// without Config.AsyncCalls: a worker that does not fit in the limit
// (its module's import, the async mode's loop thread) makes New fail
// with an error that names the limit and the fix. Linux's: RLIMIT_AS.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// addressSpaceConfig is a pool of testdata/pymod/pypool_aslimit.py under
// Limits.AddressSpace 256 MiB, not fitting in it as what says
// (PYPOOL_ASLIMIT), with Config.AsyncCalls asyncCalls.
func addressSpaceConfig(t *testing.T, what string, asyncCalls int) Config {
	cfg := testConfig(t)
	cfg.Module, cfg.AsyncCalls, cfg.Limits.AddressSpace = "pypool_aslimit", asyncCalls, 256<<20
	cfg.Env = []string{"PYPOOL_ASLIMIT=" + what}
	return cfg
}

// newFails returns New's error for cfg, which must fail.
func newFails(t *testing.T, cfg Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := New(ctx, cfg)
	if pool != nil {
		require.NoError(t, pool.Close(ctx))
	}
	require.Error(t, err)
	return err
}

// requireNamesTheLimit checks that a start error names
// Limits.AddressSpace (256 MiB) and the fix, and is fatal: the callers
// waiting for a worker get it at once.
func requireNamesTheLimit(t *testing.T, err error, pythonType ...string) {
	t.Helper()
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr, "%v", err)
	require.Contains(t, pythonType, pyErr.Type, "%v", err)
	require.Contains(t, err.Error(), "the worker ran out of address space: Config.Limits.AddressSpace is 268435456 bytes (256 MiB)")
	require.Contains(t, err.Error(), "raise Config.Limits.AddressSpace")
	require.True(t, isFatalStart(err))
}

// TestLimitsAsyncLoopThreadBeyondAddressSpace: with Config.AsyncCalls, a
// worker whose loop thread cannot start under Limits.AddressSpace fails
// its start saying so, with what the thread needs, where it said only
// that the worker did not list its async functions.
func TestLimitsAsyncLoopThreadBeyondAddressSpace(t *testing.T) {
	err := newFails(t, addressSpaceConfig(t, "thread", 4))
	requireNamesTheLimit(t, err, "RuntimeError")
	require.Contains(t, err.Error(), "could not start its event loop's thread (Config.AsyncCalls)")
	require.Contains(t, err.Error(), "can't start new thread")
	require.Contains(t, err.Error(), "and the thread's stack needs 256 MiB more: raise Config.Limits.AddressSpace above ")

	pool := newTestPool(t, addressSpaceConfig(t, "", 4)) // the same pool, when it fits
	out, err := pool.Call(testCtx(t), "echo", "fits")
	require.NoError(t, err)
	require.Equal(t, "fits", out)
}

// TestLimitsImportBeyondAddressSpace: a module whose import does not fit
// in Limits.AddressSpace, by an allocation (MemoryError, whose message is
// empty) or by an extension module it cannot map (ImportError), fails the
// start with an error that names the limit, with Config.AsyncCalls or
// without.
func TestLimitsImportBeyondAddressSpace(t *testing.T) {
	for _, asyncCalls := range []int{0, 4} {
		err := newFails(t, addressSpaceConfig(t, "import", asyncCalls))
		requireNamesTheLimit(t, err, "MemoryError")
		require.Contains(t, err.Error(), `importing module "pypool_aslimit" failed: python MemoryError: the worker ran out of address space`)

		err = newFails(t, addressSpaceConfig(t, "map", asyncCalls))
		requireNamesTheLimit(t, err, "ImportError", "MemoryError")
		var pyErr *PythonError
		if errors.As(err, &pyErr) && pyErr.Type == "ImportError" {
			require.Contains(t, pyErr.Message, "failed to map segment")
		}
	}
}

// TestLimitsRuntimeStartBeyondAddressSpace: a limit below what a worker
// needs to start fails New with an error that names the limit, on both
// interpreters, whichever step of the start runs out first: the module's
// import ("import_failed") or the runtime's own start after it, its stack
// dumps' signal stack or its read buffer ("start_failed"; where this
// happens depends on the interpreter's memory layout). Before, the
// runtime's own start let its MemoryError go uncaught before the HELLO
// ("python worker N exited with status 1", pyenv's 3.11.7 in a small
// program), or made its read buffer after the HELLO and died at every
// call (Debian's 3.11.2): a pool that started, then crashed its workers in
// a loop. python/tests/test_security.py's RuntimeStartOutOfMemoryTest
// makes the second step fail every time. In the odd run where the whole
// start fits in the limit (once in a full run of the tests under load),
// the worker must serve its first call instead.
func TestLimitsRuntimeStartBeyondAddressSpace(t *testing.T) {
	for label, python := range interpreters(t) {
		t.Run(label, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Python = python
			cfg.Limits.AddressSpace = 8 << 20 // below what python3 has mapped by then, in most runs
			ctx := testCtx(t)
			pool, err := New(ctx, cfg)
			if err == nil {
				// The start fit this time (what the interpreter has mapped
				// varies from run to run): then the worker serves, it does
				// not die after its HELLO.
				defer pool.Close(ctx)
				_, err := pool.Call(ctx, "echo", 1)
				var pyErr *PythonError
				if err != nil && !errors.As(err, &pyErr) {
					require.NoError(t, err, "a worker that started within the limit")
				}
				t.Logf("the start fit in 8 MiB this time; the worker answered its call (%v)", err)
				return
			}
			require.ErrorIs(t, err, ErrWorkerStart)
			var pyErr *PythonError
			require.ErrorAs(t, err, &pyErr, "%v", err)
			require.Contains(t, []string{"start_failed", "import_failed"}, pyErr.Code, "%v", err)
			require.Contains(t, err.Error(), "Config.Limits.AddressSpace is 8388608 bytes (8 MiB)")
			require.True(t, isFatalStart(err))
		})
	}
}

// The error of a start that ran out of memory in the runtime's own steps
// says so, with the hint.
func TestStartFailedErrorText(t *testing.T) {
	err := &importError{module: "m", err: &PythonError{Code: "start_failed", Type: "MemoryError",
		Hint: "the worker ran out of address space: Config.Limits.AddressSpace is 8388608 bytes (8 MiB): raise Config.Limits.AddressSpace"}}
	require.Equal(t, "pypool: worker failed to start: the worker ran out of memory in the runtime's own start, after its module's import: python MemoryError: the worker ran out of address space: Config.Limits.AddressSpace is 8388608 bytes (8 MiB): raise Config.Limits.AddressSpace", err.Error())
	require.True(t, isFatalStart(err))
}
