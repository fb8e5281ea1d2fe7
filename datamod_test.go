package pypool

// datamod_test.go: what the end-to-end tests of issue 9 (numpy_test.go,
// extension_e2e_test.go, shm_e2e_test.go) share: pools of
// testdata/pymod/pypool_datamod.py, the interpreters with and without
// numpy, the shared-memory settings, the DecimalString extension and byte
// patterns.

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

const debianPython = "/usr/bin/python3"

// smallThreshold is the Config.SharedMemoryThreshold of the tests that want
// modest values to go through the shared memory.
const smallThreshold = 1024

// thresholdCases are the shared-memory settings every array and bytes test
// runs with: the default (256 KiB), a small one, and none.
var thresholdCases = []struct {
	name      string
	threshold int
}{
	{"shm-default", 0},
	{"shm-1KiB", smallThreshold},
	{"shm-off", -1},
}

// dataConfig is a one-worker pool of pypool_datamod on python, with the
// DecimalString extension registered.
func dataConfig(t testing.TB, python string, threshold int) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_datamod"
	cfg.Python = python
	cfg.SharedMemoryThreshold = threshold
	cfg.Extensions = []Extension{decimalExt}
	return cfg
}

func dataPool(t testing.TB, python string, threshold int) *Pool {
	return newTestPool(t, dataConfig(t, python, threshold))
}

var (
	numpyOnce   sync.Once
	numpyReason string // why debianPython can not run the numpy tests; "" if it can
)

// numpyPython returns the interpreter with numpy, or skips the test saying
// what to install.
func numpyPython(t *testing.T) string {
	t.Helper()
	numpyOnce.Do(func() {
		if out, err := exec.Command(debianPython, "-c", "import numpy").CombinedOutput(); err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			numpyReason = fmt.Sprintf("%s can not import numpy (%v: %s): apt-get install python3-numpy",
				debianPython, err, lines[len(lines)-1])
		}
	})
	if numpyReason != "" {
		t.Skipf("not testing numpy arrays: %s", numpyReason)
	}
	return debianPython
}

// noNumpyPython returns python3 if it lacks numpy (so that arrays arrive as
// pypool_runtime.Array), else skips the test.
func noNumpyPython(t *testing.T) string {
	t.Helper()
	if exec.Command("python3", "-c", "import numpy").Run() == nil {
		t.Skip("python3 has numpy: the pypool_runtime.Array fallback needs an interpreter without it")
	}
	return "python3"
}

// DecimalString is the worked example of Config.Extensions: Python's
// decimal.Decimal as its text.
type DecimalString string

var decimalExt = Ext(10,
	func(d DecimalString) ([]byte, error) { return []byte(d), nil },
	func(b []byte) (DecimalString, error) { return DecimalString(b), nil })

// patternBytes is what pypool_datamod.patterned(n) makes: byte i is
// i*7 % 251, so that a shifted or truncated copy does not pass for it.
func patternBytes(n int) []byte {
	period := make([]byte, 251)
	for i := range period {
		period[i] = byte(i * 7 % 251)
	}
	// bytes.Repeat copies in bulk: a byte-by-byte loop costs ~100 ns a
	// byte under the race detector.
	return bytes.Repeat(period, n/251+1)[:n]
}

// largeBytes is above the default shared-memory threshold (and so above
// every threshold the tests use), but not by much, to keep the tests quick.
const largeBytes = DefaultSharedMemoryThreshold + 12345

// requireSameBytes compares byte slices without printing megabytes.
func requireSameBytes(t *testing.T, want []byte, got any, what string) {
	t.Helper()
	b, ok := got.([]byte)
	require.True(t, ok, "%s: got a %T, not []byte", what, got)
	require.Equal(t, len(want), len(b), "%s: length", what)
	if !bytes.Equal(want, b) {
		for j := range want {
			if want[j] != b[j] {
				t.Fatalf("%s: byte %d is %d, want %d", what, j, b[j], want[j])
			}
		}
	}
}
