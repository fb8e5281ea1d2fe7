package pypool

// runtime.go ships the Python worker runtime inside the Go package and finds
// the interpreter that runs it.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

//go:embed python/pypool_runtime/*.py
var runtimeFiles embed.FS

// bootstrap is the -c program that imports the runtime from the directory
// given as its first argument.
const bootstrap = "import sys;sys.path.insert(0,sys.argv[1]);from pypool_runtime.worker import main;main(sys.argv[2:])"

var (
	installOnce sync.Once
	installDir  string
	installErr  error
)

// runtimeDir returns a directory that holds the pypool_runtime package,
// writing it on first use. The directory is named by the hash of the files,
// so that every version of this package has its own and processes share it.
func runtimeDir() (string, error) {
	installOnce.Do(func() { installDir, installErr = installRuntime() })
	return installDir, installErr
}

func installRuntime() (string, error) {
	files, err := fs.Glob(runtimeFiles, "python/pypool_runtime/*.py")
	if err != nil {
		return "", err
	}
	hash := sha256.New()
	contents := make(map[string][]byte, len(files))
	for _, name := range files {
		data, err := runtimeFiles.ReadFile(name)
		if err != nil {
			return "", err
		}
		contents[filepath.Base(name)] = data
		fmt.Fprintf(hash, "%s\x00%d\x00", filepath.Base(name), len(data))
		hash.Write(data)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "pypool", "runtime-"+hex.EncodeToString(hash.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, "pypool_runtime", "worker.py")); err == nil {
		return dir, nil
	}
	if err := writeRuntime(dir, contents); err != nil {
		return "", fmt.Errorf("pypool: installing the Python runtime in %s: %w", dir, err)
	}
	return dir, nil
}

// writeRuntime writes the files into a temporary directory beside dir and
// renames it into place, so that no process ever sees half a runtime.
func writeRuntime(dir string, contents map[string][]byte) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-runtime-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	pkg := filepath.Join(tmp, "pypool_runtime")
	if err := os.Mkdir(pkg, 0o755); err != nil {
		return err
	}
	for name, data := range contents {
		if err := os.WriteFile(filepath.Join(pkg, name), data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another process may have installed the same runtime meanwhile.
		if _, statErr := os.Stat(filepath.Join(dir, "pypool_runtime", "worker.py")); statErr == nil {
			return nil
		}
		return err
	}
	return nil
}

// minPythonVersion is the oldest Python the runtime supports, as major*100+minor.
const minPythonVersion = 308

// resolvePython finds the interpreter and returns the real executable behind
// it (sys.executable). Shims such as pyenv's cost about 90 ms per launch;
// resolving once means workers start the interpreter directly.
func resolvePython(ctx context.Context, python string, env []string, dir string) (string, error) {
	path, err := exec.LookPath(python)
	if err != nil {
		return "", fmt.Errorf("%w: Python interpreter %q not found: install Python 3 or set Config.Python to its path (%v)",
			ErrWorkerStart, python, err)
	}
	cmd := exec.CommandContext(ctx, path, "-E", "-c",
		"import sys;print(sys.executable);print(sys.version_info[0]*100+sys.version_info[1])")
	cmd.Env, cmd.Dir = env, dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: running %s failed: %v: %s", ErrWorkerStart, path, err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	version, convErr := strconv.Atoi(lines[len(lines)-1])
	if len(lines) != 2 || convErr != nil {
		return "", fmt.Errorf("%w: %s does not look like Python: it printed %q", ErrWorkerStart, path, out)
	}
	executable := lines[0]
	if version < minPythonVersion {
		return "", fmt.Errorf("%w: %s is Python %d.%d; pypool needs Python 3.8 or newer",
			ErrWorkerStart, path, version/100, version%100)
	}
	if executable == "" {
		return path, nil // embedded interpreters may not know their path
	}
	return executable, nil
}
