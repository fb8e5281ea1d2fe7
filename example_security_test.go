package pypool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/pypool/pypool"
)

// Limits bound each worker: here an allocation above 1 GiB of address space
// is a MemoryError in Python, which the caller gets as a *PythonError, and
// the worker serves on.
func ExampleLimits() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_secmod",
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
		Limits: pypool.Limits{
			AddressSpace: 1 << 30,          // RLIMIT_AS: MemoryError beyond it
			CPUTime:      10 * time.Minute, // RLIMIT_CPU: killed (SIGXCPU) and replaced beyond it
			OpenFiles:    256,              // RLIMIT_NOFILE: OSError EMFILE beyond it
		},
		MaxCallsPerWorker: 10000, // replaced long before a healthy worker nears its CPU limit
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)
	_, err = pool.Call(ctx, "allocate", 2<<30)
	var pyErr *pypool.PythonError
	fmt.Println(errors.As(err, &pyErr), pyErr.Type)
	size, err := pool.Call(ctx, "allocate", 1<<20)
	fmt.Println(size, err)
	// Output:
	// true MemoryError
	// 1048576 <nil>
}

// InheritEnv lets the workers see only the variables they need of the Go
// program's environment; Env adds to them.
func ExampleConfig_inheritEnv() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_secmod",
		PythonPath: []string{"testdata/pymod"},
		Size:       1,
		InheritEnv: []string{"PATH", "LANG", "LC_*", "TZ"}, // not the service's secrets
		Env:        []string{"MODEL_DIR=/srv/models"},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)
	env, err := pool.Call(ctx, "initial_env")
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range env.([]any) {
		if kv == "MODEL_DIR=/srv/models" {
			fmt.Println(kv)
		}
	}
	// Output: MODEL_DIR=/srv/models
}

// Credential runs the workers as another user and group; the Go program
// must run as root, and the interpreter, the runtime pypool installs and the
// module must be readable by that user (see docs/security.md, "Another user").
func ExampleCredential() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "my_module",
		PythonPath: []string{"/srv/app/python"},                // 0755 down from /
		Python:     "/usr/bin/python3",                         // not pyenv's, under /root
		InstallDir: "/var/lib/pypool",                          // not root's 0700 home: the runtime must be readable by nobody
		Credential: &pypool.Credential{UID: 65534, GID: 65534}, // nobody:nogroup, no supplementary groups
		InheritEnv: []string{"LANG", "LC_*", "TZ"},             // and not root's HOME or secrets
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)
}
