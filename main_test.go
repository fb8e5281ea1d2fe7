package pypool

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// soak makes the long-running tests run this long instead of their
// default bound: go test -run TestChaos -pypool.soak=10m
var soak = flag.Duration("pypool.soak", 0, "run TestChaos for this long instead of its default bound")

// startMethod makes the tests' pools (testConfig, newTestPool) start their
// workers this way: CI runs the key scenarios again with
// -pypool.start=forkserver.
var startMethod = flag.String("pypool.start", "exec", "start method of the tests' pools: exec or forkserver")

// TestMain runs the tests, then fails if any goroutine of this package or
// any process started by the test binary, its workers or their children is
// left behind. The test binary is a child subreaper (issue 18, finding 1):
// processes orphaned by a worker's exit become its children instead of
// init's, so that the leak check and the tests see them.
func TestMain(m *testing.M) {
	if err := becomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	removeExampleBinary()
	if code == 0 {
		if err := checkLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		}
	}
	os.Exit(code)
}
