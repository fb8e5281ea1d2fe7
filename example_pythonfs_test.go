package pypool_test

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pypool/pypool"
)

// python holds testdata/embedded/embpkg: a package with a subpackage and a
// data file. all: keeps the files whose names start with '_' (__init__.py).
//
//go:embed all:testdata/embedded
var python embed.FS

// Python code inside the Go binary: Config.PythonFS is written once per
// content under Config.InstallDir (default: the user cache directory) and
// put first on the workers' sys.path. Data files come along, for
// open(__file__-relative) and importlib.resources.
func ExampleConfig_pythonFS() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:       "embpkg",
		PythonFS:     python,
		PythonFSRoot: "testdata/embedded", // the directory that goes on sys.path
		Size:         1,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	words, err := pool.Call(ctx, "words_by_resources")
	fmt.Println(words, err)
	name, err := pool.Call(ctx, "deep_name")
	fmt.Println(name, err)
	// Output:
	// [alpha beta gamma] <nil>
	// embpkg.sub.deep <nil>
}

// Several modules: Config.Modules are called as "module.function"; a plain
// name is a function of Config.Module. Only public functions of the
// configured modules can be called.
func ExampleConfig_modules() {
	ctx := context.Background()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:       "embpkg",
		Modules:      []string{"embpkg.sub.deep"},
		PythonFS:     python,
		PythonFSRoot: "testdata/embedded",
		Size:         1,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(ctx)

	out, err := pool.Call(ctx, "embpkg.sub.deep.where")
	fmt.Println(out, err)
	out, err = pool.Call(ctx, "words_by_file") // plain: embpkg's
	fmt.Println(out, err)
	_, err = pool.Call(ctx, "os.system", "true")
	fmt.Println(errors.Is(err, pypool.ErrFunctionNotFound))
	// Output:
	// embpkg.sub.deep <nil>
	// [alpha beta gamma] <nil>
	// true
}

// Config.InstallDir chooses where the runtime and PythonFS are written. A
// directory that another user could write in is refused.
func ExampleErrUnsafeInstallDir() {
	shared, err := os.MkdirTemp("", "shared-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(shared)
	_ = os.Chmod(shared, 0o777) // world-writable, not sticky

	_, err = pypool.New(context.Background(), pypool.Config{
		Module:     "embpkg",
		PythonFS:   python,
		InstallDir: filepath.Join(shared, "pypool"),
	})
	fmt.Println(errors.Is(err, pypool.ErrUnsafeInstallDir))
	// Output:
	// true
}
