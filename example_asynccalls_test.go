package pypool_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/pypool/pypool"
)

// With Config.AsyncCalls, one worker serves many calls of async def
// functions at once, on its event loop (docs/async.md). Here 100 calls
// that each wait 0.1 s run on one worker in about 0.1 s.
// testdata/pymod/pypool_asynccalls.py defines
//
//	async def sleep_echo(seconds, value):
//	    await asyncio.sleep(seconds)
//	    return value
func Example_asyncCalls() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_asynccalls",
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
		AsyncCalls: 100,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	results := make([]int, 100)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := pypool.CallAs[int](ctx, pool, "sleep_echo", 0.1, i)
			if err != nil {
				log.Fatal(err)
			}
			results[i] = n
		}()
	}
	wg.Wait()
	fmt.Println(results[0], results[99], pool.Stats().Workers)
	// Output: 0 99 1
}
