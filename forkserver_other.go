//go:build !linux

package pypool

import (
	"context"
	"errors"
	"os"
	"time"
)

// errForkServerDown is a fork request's error when there is no template.
var errForkServerDown = errors.New("pypool: the fork server is not running")

// forkServer is never started outside Linux: the pool uses StartExec.
type forkServer struct {
	pid     int
	started time.Time
	status  exitStatus
}

func startForkServer(context.Context, *workerSpec, func(*forkServer)) (*forkServer, error) {
	return nil, errors.New("pypool: Config.StartForkServer needs Linux (pidfds and SCM_RIGHTS); using StartExec")
}

func (*forkServer) fork(context.Context, []*os.File) (osProcess, error) {
	return nil, errForkServerDown
}
func (*forkServer) stop(time.Duration) {}

// orphaned is false: there are no forked workers outside Linux.
func orphaned(osProcess) bool { return false }
