// Command hostdeath starts a pool, prints its workers' pids and waits to be
// killed: TestHostDeathLeavesNoWorker checks the workers die with it. Its
// arguments: the test module's directory, then "exec" or "forkserver".
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
	// Hold both workers, one of them in a long call, and report their pids.
	_ = pool.Transaction(ctx, func(a *pypool.Worker) error {
		return pool.Transaction(ctx, func(b *pypool.Worker) error {
			fmt.Println(a.Pid(), b.Pid())
			_, err := b.Call(ctx, "sleep", 3600)
			return err
		})
	})
	select {}
}
