// Command hostdeath starts a pool, prints its workers' pids and the pid of a
// child one of them started, has the other one busy in C code and waits to
// be killed: TestHostDeathLeavesNoWorker checks that they all die with it.
// Its arguments: the test module's directory, then "exec" or "forkserver".
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pypool/pypool"
)

func main() {
	ctx := context.Background()
	method := pypool.StartExec
	if len(os.Args) > 2 && os.Args[2] == "forkserver" {
		method = pypool.StartForkServer
	}
	pool, err := pypool.New(ctx, pypool.Config{
		Module:      "pypool_testmod",
		PythonPath:  []string{os.Args[1]},
		Size:        2,
		StartMethod: method,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Hold both workers, one of them with a child of its own, the other in a
	// long call in C code (it prints "entering C", which the pool logs on
	// stderr), and report their pids.
	_ = pool.Transaction(ctx, func(a *pypool.Worker) error {
		return pool.Transaction(ctx, func(b *pypool.Worker) error {
			child, err := a.Call(ctx, "spawn_sleeping_child")
			if err != nil {
				return err
			}
			fmt.Println(a.Pid(), b.Pid(), child)
			_, err = b.Call(ctx, "busy_in_c")
			return err
		})
	})
	select {}
}
