package pypool

// runtime.go ships the Python worker runtime inside the Go package and finds
// the interpreter that runs it.

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

//go:embed python/pypool_runtime/*.py
var runtimeFiles embed.FS

// bootstrap is the -c program that imports the runtime from the directory
// given as its first argument. Its first line, which even Python 2 parses,
// refuses interpreters too old for the runtime.
const bootstrap = "import sys\n" +
	"if sys.version_info<(3,8):sys.stderr.write('pypool needs Python 3.8 or newer, this is Python '+sys.version.split()[0]+'\\n');sys.exit(86)\n" +
	"sys.path.insert(0,sys.argv[1]);from pypool_runtime.worker import main;main(sys.argv[2:])"

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

// exitUnsupportedPython is the exit status of the bootstrap on a Python
// older than 3.8, which cannot even parse the runtime.
const exitUnsupportedPython = 86

// interpreter is the Python a pool's workers run: the command as
// configured, until a worker's handshake has told the real executable behind
// it (sys.executable), which later starts run directly. Launcher shims such
// as pyenv's cost about 90 ms per launch; this way New pays for the shim
// once, in its first workers, instead of running an extra interpreter to ask.
type interpreter struct {
	key     string                 // the command, working directory and environment
	command atomic.Pointer[string] // what a worker start runs
}

// knownExecutables holds, for the life of the process, the real executable
// learned for each interpreter key, so that later pools start it directly.
var knownExecutables sync.Map

// newInterpreter finds the interpreter named python (a name looked up in
// PATH, or a path). Nothing is run: the first worker's handshake says
// which Python it is.
func newInterpreter(python string, env []string, dir string) (*interpreter, error) {
	path, err := exec.LookPath(python)
	if err != nil {
		return nil, fmt.Errorf("%w: Python interpreter %q not found: install Python 3 or set Config.Python to its path (%v)",
			ErrWorkerStart, python, err)
	}
	in := &interpreter{key: path + "\x00" + dir + "\x00" + strings.Join(env, "\x00")}
	if exe, ok := knownExecutables.Load(in.key); ok {
		path = exe.(string)
	}
	in.command.Store(&path)
	return in, nil
}

// path returns what a worker start runs.
func (in *interpreter) path() string { return *in.command.Load() }

// learn records the real executable a worker reported. Embedded
// interpreters may not know theirs ("").
func (in *interpreter) learn(executable string) {
	if executable == "" || executable == in.path() {
		return
	}
	in.command.Store(&executable)
	knownExecutables.Store(in.key, executable)
}

// forkBootstrap is bootstrap for the fork server's template
// (python/pypool_runtime/forkserver.py).
var forkBootstrap = strings.Replace(bootstrap, "pypool_runtime.worker import", "pypool_runtime.forkserver import", 1)
