package pypool

// runtime.go ships the Python worker runtime inside the Go package and finds
// the interpreter that runs it.

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os/exec"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pypool/pypool/internal/install"
	"github.com/pypool/pypool/internal/wire"
)

//go:embed python/pypool_runtime/*.py
var runtimeFiles embed.FS

// bootstrap is the -c program that imports the runtime from the directory
// its starter hands it on stdin (bootstrapHold). Its first line, which
// even Python 2 parses, refuses interpreters too old for the runtime. The
// interpreter runs it with -I (isolated mode), which keeps the working
// directory off sys.path from the interpreter's start on every version
// (-c would put it first, as "", and Python 3.13 imports linecache from
// there before running the command); should an interpreter put it there
// anyway, the bootstrap removes it before it imports anything that is not
// built in (sys is).
const bootstrap = bootstrapHead + bootstrapHold + "from pypool_runtime.worker import main;main(sys.argv[1:])"

// bootstrapHead is the part of bootstrap that the fork server's template
// runs too: the version check, the working directory off sys.path.
const bootstrapHead = "import sys\n" +
	"if sys.version_info<(3,8):sys.stderr.write('pypool needs Python 3.8 or newer, this is Python '+sys.version.split()[0]+'\\n');sys.exit(86)\n" +
	"sys.path[:]=[p for p in sys.path if p]\n"

// bootstrapHold holds the bootstrap until its starter writes the
// runtime's directory on its stdin (runtimeDirFrame): it reads nothing of
// that directory, nor of any user path, before then, so that the
// interpreter can start while the install is checked (startGate). It
// reads exactly the frame, never a byte of the protocol after it; an end
// of stdin instead (the pool gave up the start, or the Go process is
// gone) ends the interpreter, having run nothing of the runtime. os is
// the interpreter's own, imported as it started.
const bootstrapHold = "import os\n" +
	"def _take(n):\n" +
	" b=b''\n" +
	" while len(b)<n:\n" +
	"  c=os.read(0,n-len(b))\n" +
	"  if not c:sys.exit(0)\n" +
	"  b+=c\n" +
	" return b\n" +
	"sys.path.insert(0,os.fsdecode(_take(int.from_bytes(_take(4),'big'))));del _take\n"

// runtimeDirFrame is what releases a held bootstrap: dir as a frame of
// the protocol's (its length, 4 bytes big-endian, then its bytes).
func runtimeDirFrame(dir string) []byte {
	frame := append(make([]byte, wire.HeaderSize, wire.HeaderSize+len(dir)), dir...)
	wire.PutHeader(frame)
	return frame
}

// runtimeTree is the embedded runtime as files to install, hashed once and
// read in place (install.FromEmbed).
var runtimeTree = sync.OnceValues(loadRuntimeTree)

// loadRuntimeTree names the embedded runtime's files and hashes them.
func loadRuntimeTree() (*install.Tree, error) {
	names, err := fs.Glob(runtimeFiles, "python/pypool_runtime/*.py")
	if err != nil {
		return nil, err
	}
	files := make(map[string]string, len(names))
	for _, name := range names {
		files["pypool_runtime/"+path.Base(name)] = name
	}
	return install.FromEmbed("runtime", runtimeFiles, files)
}

// runtimeDir returns a directory that holds the pypool_runtime package,
// exactly as embedded, under the install base chosen for installDir
// (Config.InstallDir): see internal/install for how it is verified, written and
// cleaned up. The first call of a process for a base checks the directory,
// and logs to log how long that took (msgRuntimeInstalled).
func runtimeDir(installDir string, log *slog.Logger) (string, error) {
	begun := time.Now()
	t, err := runtimeTree()
	if err != nil {
		return "", err
	}
	dir, checked, err := install.Check(installDir, t)
	if checked && log != nil {
		log.Debug(msgRuntimeInstalled, "runtime", dir, "took", time.Since(begun).Round(time.Microsecond))
	}
	return dir, err
}

// msgRuntimeInstalled is the Debug record of a runtime directory checked
// (verified, or written) by this process: once per process and install
// directory, in its first New.
const msgRuntimeInstalled = "pypool: runtime installed"

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
	if err != nil && (errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist)) {
		return nil, fmt.Errorf("%w: Python interpreter %q not found: install Python 3 or set Config.Python to its path (%v)",
			ErrWorkerStart, python, err)
	}
	if err != nil { // there, but not a program this user can run: a directory, a file without x
		return nil, fmt.Errorf("%w: Python interpreter %q cannot be run: set Config.Python to a python3 executable (%v)",
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

// forkBootstrap is the fork server template's bootstrap
// (python/pypool_runtime/forkserver.py): the runtime's directory is its
// first argument. It does not hold: its stdin is /dev/null, and its exec
// waits for the pool's startGate.
const forkBootstrap = bootstrapHead + "sys.path.insert(0,sys.argv[1]);from pypool_runtime.forkserver import main;main(sys.argv[2:])"
