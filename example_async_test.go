package pypool_test

import (
	"context"
	"fmt"
	"log"

	"github.com/pypool/pypool"
)

// An async def function is called like any other: the worker awaits it on
// its event loop. testdata/pymod/pypool_asyncmod.py defines
//
//	async def double(value):
//	    await asyncio.sleep(0)
//	    return value * 2
func Example_asyncFunction() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_asyncmod",
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	n, err := pypool.CallAs[int](ctx, pool, "double", 21)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
	// Output: 42
}
