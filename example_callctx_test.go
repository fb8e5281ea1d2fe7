package pypool_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/pypool/pypool"
)

// The call's context inside Python: the caller's deadline and metadata.
// testdata/pymod/pypool_ctxmod.py defines
//
//	def tenant_timeout():
//	    cc = pypool.current_call()
//	    left = pypool.remaining()  # seconds before Go's deadline, None without one
//	    return {"tenant": cc.metadata.get("tenant"), "timeout_ok": left is not None and 0 < left <= 10}
func ExampleWithMetadata() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_ctxmod",
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx = pypool.WithMetadata(ctx, map[string]string{"tenant": "acme"})
	got, err := pypool.CallAs[map[string]any](ctx, pool, "tenant_timeout")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got["tenant"], got["timeout_ok"])
	// Output: acme true
}

// Metadata that breaks a limit fails the call before any worker is used,
// with a *MetadataError that names the key and the limit.
func ExampleMetadataError() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_ctxmod",
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	ctx = pypool.WithMetadata(ctx, map[string]string{"request_id": "r-\xff"})
	_, err = pool.Call(ctx, "context")
	var me *pypool.MetadataError
	if errors.As(err, &me) {
		fmt.Println(me.Key, me.Limit, errors.Is(err, pypool.ErrArgNotEncodable))
	}
	// Output: request_id UTF-8 true
}
