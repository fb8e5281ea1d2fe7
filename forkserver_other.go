//go:build !linux

package pypool

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"
)

// errForkServerDown is a fork request's error when there is no template.
var errForkServerDown = errors.New("pypool: the fork server is not running")

// errForkServerUnsupported is why a template never starts outside Linux.
var errForkServerUnsupported = errors.New("pypool: Config.StartForkServer needs Linux (pidfds and SCM_RIGHTS); using StartExec")

// forkServer is never started outside Linux: the pool uses StartExec.
type forkServer struct {
	pid     int
	started time.Time
	status  exitStatus
	settled func(fs *forkServer, err error, givenUp bool) // told at the first fork request that it cannot start (givenUp: never)
	once    sync.Once
}

// newForkServer returns a template that never starts: its first fork
// request tells settled why.
func newForkServer(*workerSpec, func(*forkServer)) *forkServer { return &forkServer{} }

func startForkServer(context.Context, *workerSpec, func(*forkServer)) (*forkServer, error) {
	return nil, errForkServerUnsupported
}

func (fs *forkServer) fork(context.Context, []*os.File) (osProcess, error) {
	fs.once.Do(func() {
		if fs.settled != nil {
			fs.settled(fs, errForkServerUnsupported, false)
		}
	})
	return nil, errForkServerDown
}
func (*forkServer) stop(time.Duration) {}

// begin tells settled that the template cannot start.
func (fs *forkServer) begin(context.Context) {
	fs.once.Do(func() {
		if fs.settled != nil {
			fs.settled(fs, errForkServerUnsupported, false)
		}
	})
}

// ready is false: a template never runs outside Linux.
func (*forkServer) ready() bool { return false }

// orphaned is false: there are no forked workers outside Linux.
func orphaned(osProcess) bool { return false }

// forkedBy is nil: there are no forked workers outside Linux.
func forkedBy(osProcess) *forkServer { return nil }

// exited is true: a template never runs outside Linux.
func (*forkServer) exited() bool { return true }
