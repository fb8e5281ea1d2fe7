package pypool

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pypool/pypool/internal/install"
	"github.com/vmihailenco/msgpack/v5"
)

// Strategy says which idle worker a checkout gets.
type Strategy int

const (
	// LIFO hands out the most recently returned worker: a few workers stay
	// hot (caches, branch predictors) while the others idle. The default,
	// as in poolboy.
	LIFO Strategy = iota
	// FIFO hands out the worker that has been idle longest, spreading calls
	// evenly across the workers.
	FIFO
)

// String returns "lifo" or "fifo".
func (s Strategy) String() string {
	switch s {
	case LIFO:
		return "lifo"
	case FIFO:
		return "fifo"
	}
	return "Strategy(" + strconv.Itoa(int(s)) + ")"
}

// StartMethod says how a pool starts its workers.
type StartMethod int

const (
	// StartExec starts each worker as its own python3 process, which
	// imports the runtime and Module: a start costs an interpreter's start
	// plus the module's import. The default.
	StartExec StartMethod = iota
	// StartForkServer starts one template process per pool that imports
	// the runtime, Module and Config.Preload once; each worker is then
	// forked from it, ready in about a millisecond and sharing the
	// template's memory until it writes to it. With Size 1, New's worker
	// is started by exec before the template, so that New waits for one
	// interpreter's start only, and is replaced by a forked one at its
	// first check-in once the template runs. Linux only (5.3 or newer,
	// Python 3.9 or newer); elsewhere, and when the template cannot start,
	// the pool logs why and uses StartExec. See docs/forkserver.md for what a
	// module must not do at import time.
	StartForkServer
)

// String returns "exec" or "forkserver".
func (m StartMethod) String() string {
	switch m {
	case StartExec:
		return "exec"
	case StartForkServer:
		return "forkserver"
	}
	return "StartMethod(" + strconv.Itoa(int(m)) + ")"
}

// Config configures a Pool. The zero value of every field except Module means
// its documented default.
//
// The first fields are those most pools set: the module to call, where its
// code is (PythonPath or PythonFS), the number of workers (Size,
// MaxOverflow) and the interpreter. The others come in groups, each headed
// by its name between dashes: sizing and waiting; deadlines, retries and recycling; the Python
// environment and deployment; values, callbacks and shared memory; security;
// observability; the fork server. docs/configuration.md has them all in one
// table.
type Config struct {
	// --- What most pools set ---
	//
	// Module is the Python module whose public functions can be called, as
	// in an import statement: "my_module" or "package.module". A call names
	// one of its functions plainly ("fn") or as "module.fn". Required unless
	// Modules is set.
	Module string

	// Modules lists more modules whose public functions can be called,
	// named as "module.fn" (a dotted module: "package.module.fn"). A plain
	// name ("fn") always means a function of Module, or of Modules[0] when
	// Module is empty. Every module is imported when a worker starts; one
	// that fails to import is a start failure naming it. Default: none.
	Modules []string

	// PythonPath lists directories put first on the worker's sys.path
	// (after PythonFS's directory), ahead of the interpreter's standard
	// library and site-packages.
	// Relative entries are relative to Dir (or, when Dir is empty, to the Go
	// program's working directory). The working directory itself is not on
	// sys.path unless listed here ("."): a file in it named like a standard
	// module (traceback.py) can not replace that module. Nor is the user's
	// site-packages (~/.local/lib/python3.X/site-packages; -I implies -s):
	// list it here if the module needs packages installed with
	// "pip install --user".
	PythonPath []string

	// PythonFS holds Python code to import, typically an embed.FS: the
	// pool writes its files (below PythonFSRoot, "" meaning all of it) to
	// a directory under InstallDir named by their content, and puts that
	// directory first on the workers' sys.path, so that the application
	// deploys as one Go binary plus an interpreter. Data files beside the
	// code are written too, so that open() relative to __file__ and
	// importlib.resources work. __pycache__ directories and .pyc files in
	// it are left out. Meant for code and its small data files: they are
	// read into memory, hashed and compared at each New. Default nil:
	// nothing is written; use PythonPath.
	PythonFS     fs.FS
	PythonFSRoot string

	// Size is the number of workers kept running. Default: the number of
	// CPUs.
	Size int

	// MaxOverflow is how many workers may be started beyond Size while all
	// are busy. A worker checked in while overflow workers exist and no
	// caller waits is stopped (poolboy's rule), unless OverflowIdleTimeout
	// keeps it. Default 0.
	MaxOverflow int

	// ReloadSurge is how many workers Pool.Reload may run beyond
	// Size+MaxOverflow while it replaces the workers: each new worker is
	// started and proven (module imported, SetUp done) before the old one
	// it replaces is retired, and the surge is where it starts. It is also
	// how many new workers a reload starts at a time. Default
	// DefaultReloadSurge (1); it must not be negative (0 means the default).
	ReloadSurge int

	// Python is the interpreter to run: a name looked up in PATH or a path.
	// Default "python3". It is resolved once, by New, to the real executable
	// (sys.executable), so that launcher shims such as pyenv's are not paid
	// for at every worker start.
	Python string

	// --- Sizing and waiting ---
	//
	// Strategy chooses among idle workers: LIFO (default) or FIFO.
	Strategy Strategy

	// MaxWaiting limits the callers waiting for a worker: beyond it, calls
	// fail at once with ErrPoolExhausted. Default 0: no limit. NoWaiting
	// (-1): no call waits behind others; every call on the pool behaves as
	// one with NoWait. Other negative values are refused by New.
	MaxWaiting int

	// OverflowIdleTimeout keeps overflow workers idle this long before they
	// are stopped, so that bursts do not start and stop Python processes on
	// every call. Default 0: a worker checked in while overflow workers
	// exist and no caller waits is stopped at once (poolboy's behaviour).
	OverflowIdleTimeout time.Duration

	// --- Deadlines, retries and recycling ---
	//
	// CallTimeout bounds calls whose context has no deadline, waiting for a
	// worker included. Default 0: no bound.
	CallTimeout time.Duration

	// StartTimeout bounds a worker's start, including the import of Module.
	// Default 60s.
	StartTimeout time.Duration

	// InterruptGrace is how long a worker whose call's context ended may
	// take to answer the KeyboardInterrupt it is sent. A worker that answers
	// in time goes back to the pool; otherwise it is killed and replaced.
	// The caller does not wait for it. Default 1s.
	InterruptGrace time.Duration

	// StopTimeout is how long a stopping worker may take to exit after its
	// input is closed before it is killed. Default 5s.
	StopTimeout time.Duration

	// CrashRetries is how many times Call and CallAs try a call again on
	// another worker when its worker crashed (or failed to start for a
	// reason that may not repeat). Only for pools of idempotent functions:
	// the crashed call may have had effects. Python exceptions and ended
	// contexts are never retried. Default 0.
	CrashRetries int

	// MaxCallsPerWorker replaces a worker after it served this many calls
	// plus a random 0..MaxCallsJitter more (like gunicorn's max_requests),
	// to contain leaks in Python code. Default 0: never.
	MaxCallsPerWorker int
	MaxCallsJitter    int

	// MaxWorkerLifetime replaces a worker after it ran this long (plus up
	// to 10% jitter). Default 0: never.
	MaxWorkerLifetime time.Duration

	// MaxWorkerMemory replaces a worker whose resident memory exceeds this
	// many bytes. It is read every second; a worker over the limit is
	// replaced when it is idle or after its current call, never during it.
	// Default 0: no limit.
	MaxWorkerMemory int64

	// --- Python environment and deployment ---
	//
	// InstallDir is where pypool writes its Python runtime and PythonFS's
	// files, each in a directory named by its content's hash, verified
	// before each process uses it (see "Deploying your Python code" in
	// docs/operating.md). It must be owned by this user, writable by no one else, and
	// so must be its parents (a sticky directory such as /tmp excepted).
	// A relative path is relative to the Go program's working directory.
	// Default: the user cache directory's pypool (~/.cache/pypool), or,
	// when there is none, it is read-only or another user could write it
	// (a HOME of another user: nothing is created there), pypool-<uid> in
	// the temp directory, logged once per process. An InstallDir that is
	// unsafe is ErrUnsafeInstallDir, never a fallback (docs/security.md).
	InstallDir string

	// SetUp names a function of Module (of Modules[0] when Module is
	// empty) that each new worker runs once, after importing the modules
	// and before serving calls: load a model, open a
	// file. SetUpArgs are its arguments (a trailing Kwargs gives keyword
	// arguments), encoded as a call's. An exception in it is a start
	// failure, as an import error is: New returns it (a *PythonError with
	// the traceback, wrapped with ErrWorkerStart), and later starts back
	// off. The set-up's duration is logged when a worker starts. Default
	// "": none.
	SetUp     string
	SetUpArgs []any

	// Dir is the workers' working directory; New fails, wrapping
	// ErrWorkerStart, if it is not a directory. Default: the Go program's.
	Dir string

	// Env holds "KEY=value" entries added to the workers' environment
	// (what InheritEnv lets through of the Go program's). The interpreter
	// runs isolated (-I, which implies -E): PYTHONPATH, PYTHONSTARTUP and
	// the other PYTHON* variables are ignored (use PythonPath), so that the
	// caller's environment can not break the runtime.
	Env []string

	// --- Values, callbacks and shared memory ---
	//
	// MaxMessageSize limits the size of one encoded call or reply. Default
	// 64 MiB (DefaultMaxMessageSize).
	MaxMessageSize int

	// SharedMemoryThreshold is the size from which a bytes value or an
	// array travels through memory shared with the worker instead of through
	// the pipes: the message carries only a reference to it. Each worker's
	// shared memory grows to the largest call's values and is released with
	// the worker. Default 0: DefaultSharedMemoryThreshold; negative: never.
	// Shared memory needs Linux (amd64 or arm64); elsewhere it is never used.
	SharedMemoryThreshold int

	// StructTag names a struct tag that struct fields without a `msgpack`
	// tag are matched by, both for struct arguments and for CallAs
	// results: "json" lets types written for encoding/json cross without a
	// second set of tags. Default "": the `msgpack` tag, else the field
	// name.
	StructTag string

	// Extensions lists Go types of your own that cross as msgpack extension
	// types, both ways: build each with Ext and register the same code on
	// the Python side (pypool_runtime.register_ext). Codes are 0..119
	// (120..127 are pypool's); no two may share a code or a Go type. Ext
	// says where a value is written as its extension. Default: none; a
	// result holding an extension type not listed here is an error wrapping
	// ErrResultNotDecodable.
	Extensions []Extension

	// Callbacks are the Go functions that Python code may call while a
	// call from Go runs, by name: call_go("lookup_user", 42) after
	// "from pypool import call_go" (docs/streaming-and-callbacks.md). Build one
	// from a typed function with CallbackFunc. A callback's context ends
	// with the call's; calls made with it on this pool run on the worker
	// that waits for the callback, so callbacks may nest. Default: none.
	Callbacks map[string]Callback

	// AsyncCalls, above 0, lets one worker serve up to AsyncCalls calls of
	// the module's `async def` functions at once, as tasks on its event
	// loop, which then runs all the time (background tasks run between
	// calls): docs/async.md. Calls of other functions, streams, Ping and
	// a Transaction's calls keep a worker to themselves, as without it. A
	// call's deadline cancels its task only (CancelledError in it); a task
	// that ignores the cancellation for Config.InterruptGrace gets its
	// worker killed, and the other calls on it fail with
	// ErrWorkerCrashed. In this mode async functions cannot call Go
	// (Config.Callbacks: a Python exception), and values never cross
	// through shared memory (SharedMemoryThreshold must be left 0).
	// Default 0: one call per worker, async or not.
	AsyncCalls int

	// --- Security (docs/security.md) ---
	//
	// InheritEnv, when not nil, is the allow-list of the Go program's
	// environment variables that the workers inherit: names ("PATH") and
	// prefixes ending in "*" ("LC_*"); Env is added to them. An empty,
	// non-nil list inherits nothing. Default nil: the whole environment,
	// as os/exec does. PATH, HOME, LANG, LC_* and TZ are not special: a
	// worker without PATH finds programs in /bin and /usr/bin only, without
	// HOME Python takes the home directory from the password database,
	// without locale variables it runs in UTF-8 mode, without TZ local time
	// is /etc/localtime's. A launcher shim such as pyenv's runs with this
	// environment too (PYENV_VERSION counts only if listed): set Python to
	// the real interpreter to be sure. See docs/security.md.
	InheritEnv []string

	// Limits are resource limits (address space, CPU seconds, open files)
	// applied in each worker before it imports Module. Default: none.
	Limits Limits

	// Credential, when not nil, runs the workers as this user and group;
	// the Go program must run as root. The interpreter, the Python runtime
	// pypool installs, PythonPath and Dir must be within that user's reach:
	// New checks them all (by permission bits; the default install under
	// root's home is not). Default nil: the Go program's user.
	Credential *Credential

	// --- Observability (docs/observability.md) ---
	//
	// Logger receives what the workers write to stdout (level Info) and
	// stderr (level Warn), line by line, tagged with the worker's pid and
	// the function of the call that wrote it, and the pool's own events:
	// each worker's start, stop, recycling and crash, interrupted calls,
	// and the Python stack of a call slow to answer its interrupt or a
	// worker killed (StackDumps; the "Logs" table of
	// docs/observability.md). Default slog.Default().
	Logger *slog.Logger

	// StackDumps says which calls' Python stacks (all threads, taken by
	// faulthandler) the pool logs, at level Warn. Default StackDumpsSlow:
	// the calls that had to be killed (no answer to their interrupt within
	// InterruptGrace) and those slow to answer it (no answer within half of
	// it); a call that answers its interrupt promptly logs no stack. Each
	// function's stacks are rate-limited: the first, then at most one per
	// StackDumpInterval, which counts the ones suppressed ("suppressed").
	StackDumps StackDumpPolicy

	// StackDumpInterval is the least time between two stack records of one
	// function and event (see StackDumps). Default
	// DefaultStackDumpInterval.
	StackDumpInterval time.Duration

	// Tracer, when set, is told when each call starts, gets a worker and
	// ends (see Tracer); github.com/pypool/pypool/otel adapts it to
	// OpenTelemetry. Pool.AddTracer adds more to a running pool (the
	// prometheus subpackage's collector). Default nil: no tracing, at no
	// cost.
	Tracer Tracer

	// --- Fork server (docs/forkserver.md) ---
	//
	// StartMethod says how workers start: StartExec (the default) or
	// StartForkServer.
	StartMethod StartMethod

	// Preload lists modules, besides Module, that the fork server's
	// template imports before it forks any worker (StartForkServer only):
	// heavy dependencies such as "numpy" whose import every worker would
	// otherwise pay for. Default: none.
	Preload []string

	// PreloadSetUp runs SetUp once, in the fork server's template, instead
	// of in each worker (StartForkServer only): for a set-up that only
	// builds memory (a model loaded into Python objects), which the
	// workers then share. Leave it false for a set-up that opens files,
	// sockets or threads: those must be each worker's own. Default false.
	PreloadSetUp bool
}

// DefaultReloadSurge is Config.ReloadSurge's default: the new workers a
// reload may run beyond Size+MaxOverflow.
const DefaultReloadSurge = 1

// Defaults of Config's durations.
const (
	DefaultStartTimeout      = 60 * time.Second
	DefaultInterruptGrace    = time.Second
	DefaultStopTimeout       = 5 * time.Second
	DefaultStackDumpInterval = time.Minute
)

// NoWaiting is the value of Config.MaxWaiting with which no call waits
// behind other callers: every call on the pool (every form, Transaction's
// checkout and Ping) behaves as one made with NoWait, taking an idle
// worker, or one started for it while Size+MaxOverflow allows, and
// failing at once with ErrPoolExhausted otherwise.
const NoWaiting = -1

// StackDumpPolicy says which Python stacks a pool logs (Config.StackDumps).
type StackDumpPolicy int

const (
	// StackDumpsSlow logs the stack of a call whose worker had to be
	// killed because it did not answer its interrupt within
	// Config.InterruptGrace, and of one that answered only after half of
	// it: where the call was stuck. The default.
	StackDumpsSlow StackDumpPolicy = iota
	// StackDumpsOff logs no Python stack at all.
	StackDumpsOff
	// StackDumpsAll also logs the stack of every call cut off by its
	// context, taken at that moment (before its KeyboardInterrupt), still
	// rate-limited per function: for debugging, not for a service's
	// ordinary day.
	StackDumpsAll
)

// String returns "slow", "off" or "all".
func (s StackDumpPolicy) String() string {
	switch s {
	case StackDumpsSlow:
		return "slow"
	case StackDumpsOff:
		return "off"
	case StackDumpsAll:
		return "all"
	}
	return "StackDumpPolicy(" + strconv.Itoa(int(s)) + ")"
}

// DefaultSharedMemoryThreshold is the default of
// Config.SharedMemoryThreshold, chosen by measurement (go run ./bench
// -scenario sweep): below it the pipes are as fast.
const DefaultSharedMemoryThreshold = 64 << 10

var pythonName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if err := validateModules(c.Module, c.Modules); err != nil {
		return c, err
	}
	negative := firstNegative([]numField{{"StartTimeout", int64(c.StartTimeout), true},
		{"InterruptGrace", int64(c.InterruptGrace), true}, {"StopTimeout", int64(c.StopTimeout), true},
		{"CallTimeout", int64(c.CallTimeout), true}, {"MaxWorkerLifetime", int64(c.MaxWorkerLifetime), true},
		{"OverflowIdleTimeout", int64(c.OverflowIdleTimeout), true}, {"CrashRetries", int64(c.CrashRetries), false},
		{"MaxCallsPerWorker", int64(c.MaxCallsPerWorker), false}, {"MaxCallsJitter", int64(c.MaxCallsJitter), false},
		{"MaxWorkerMemory", c.MaxWorkerMemory, false}})
	switch {
	case c.Size < 0:
		return c, fmt.Errorf("pypool: Config.Size is %d: it must be positive (0 means the number of CPUs)", c.Size)
	case c.MaxOverflow < 0:
		return c, fmt.Errorf("pypool: Config.MaxOverflow is %d: it can not be negative", c.MaxOverflow)
	case c.ReloadSurge < 0:
		return c, fmt.Errorf("pypool: Config.ReloadSurge is %d: it can not be negative (0 means the default, %d: "+
			"the workers Pool.Reload may start beyond Size+MaxOverflow)", c.ReloadSurge, DefaultReloadSurge)
	case c.Strategy != LIFO && c.Strategy != FIFO:
		return c, fmt.Errorf("pypool: Config.Strategy is %v: use pypool.LIFO or pypool.FIFO", c.Strategy)
	case negative != "":
		return c, fmt.Errorf("pypool: Config.%s: it can not be negative (0 means the default)", negative)
	case c.StackDumps < StackDumpsSlow || c.StackDumps > StackDumpsAll:
		return c, fmt.Errorf("pypool: Config.StackDumps is %v: use pypool.StackDumpsSlow, StackDumpsOff or StackDumpsAll", c.StackDumps)
	case c.StackDumpInterval < 0:
		return c, fmt.Errorf("pypool: Config.StackDumpInterval is %v: it can not be negative", c.StackDumpInterval)
	case c.MaxWaiting < NoWaiting:
		return c, fmt.Errorf("pypool: Config.MaxWaiting is %d: use a limit above 0, 0 (no limit) or pypool.NoWaiting (-1: no call waits)", c.MaxWaiting)
	case c.AsyncCalls < 0:
		return c, fmt.Errorf("pypool: Config.AsyncCalls is %d: it can not be negative (0: one call per worker)", c.AsyncCalls)
	case c.AsyncCalls > 0 && c.SharedMemoryThreshold > 0:
		return c, fmt.Errorf("pypool: Config.SharedMemoryThreshold is %d with Config.AsyncCalls: a worker's shared memory serves one call at a time, "+
			"so in async mode values always cross through the pipes; leave SharedMemoryThreshold 0", c.SharedMemoryThreshold)
	case c.MaxMessageSize < 0 || c.MaxMessageSize > 1<<32-1:
		return c, fmt.Errorf("pypool: Config.MaxMessageSize is %d: it must be between 0 (the default, 64 MiB) and 4 GiB", c.MaxMessageSize)
	}
	if c.SetUp != "" && !pythonName.MatchString(c.SetUp) {
		return c, fmt.Errorf("pypool: Config.SetUp %q is not the name of a function of the module, such as \"load_model\"", c.SetUp)
	}
	if c.StartMethod != StartExec && c.StartMethod != StartForkServer {
		return c, fmt.Errorf("pypool: Config.StartMethod is %v: use pypool.StartExec or pypool.StartForkServer", c.StartMethod)
	}
	for _, m := range c.Preload {
		if !moduleName.MatchString(m) {
			return c, fmt.Errorf("pypool: Config.Preload entry %q is not a Python module name such as \"numpy\"", m)
		}
	}
	if c.PreloadSetUp && c.SetUp == "" {
		return c, fmt.Errorf("pypool: Config.PreloadSetUp is set but Config.SetUp is empty: name the function to preload")
	}
	if c.PythonFS == nil && c.PythonFSRoot != "" {
		return c, fmt.Errorf("pypool: Config.PythonFSRoot is set but Config.PythonFS is nil: give the fs.FS (an embed.FS) it is a directory of")
	}
	if c.SetUp == "" && len(c.SetUpArgs) > 0 {
		return c, fmt.Errorf("pypool: Config.SetUpArgs is set but Config.SetUp is empty: name the function they are for")
	}
	for name, cb := range c.Callbacks {
		if name == "" || cb == nil {
			return c, fmt.Errorf("pypool: Config.Callbacks has an empty name or a nil function (%q): register each Go function under its name", name)
		}
	}
	for _, kv := range c.Env {
		if i := strings.IndexByte(kv, '='); i <= 0 {
			return c, fmt.Errorf("pypool: Config.Env entry %q is not of the form KEY=value", kv)
		}
	}
	if err := validateExtensions(c.Extensions); err != nil {
		return c, err
	}
	if err := c.validateSecurity(); err != nil {
		return c, err
	}
	c.Python = orDefault(c.Python, "python3")
	c.Size = orDefault(c.Size, runtime.NumCPU())
	c.StartTimeout = orDefault(c.StartTimeout, DefaultStartTimeout)
	c.ReloadSurge = orDefault(c.ReloadSurge, DefaultReloadSurge)
	c.InterruptGrace = orDefault(c.InterruptGrace, DefaultInterruptGrace)
	c.StopTimeout = orDefault(c.StopTimeout, DefaultStopTimeout)
	c.StackDumpInterval = orDefault(c.StackDumpInterval, DefaultStackDumpInterval)
	c.MaxMessageSize = orDefault(c.MaxMessageSize, DefaultMaxMessageSize)
	if c.AsyncCalls > 0 {
		c.SharedMemoryThreshold = -1 // never: see AsyncCalls
	}
	c.SharedMemoryThreshold = orDefault(c.SharedMemoryThreshold, DefaultSharedMemoryThreshold)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// numField is a numeric field of Config, for firstNegative.
type numField struct {
	name     string
	value    int64
	duration bool
}

// firstNegative names the first of fields whose value is negative, with
// its value ("StopTimeout is -1s"), or returns "".
func firstNegative(fields []numField) string {
	for _, f := range fields {
		switch {
		case f.value >= 0:
		case f.duration:
			return fmt.Sprintf("%s is %v", f.name, time.Duration(f.value))
		default:
			return fmt.Sprintf("%s is %d", f.name, f.value)
		}
	}
	return ""
}

// validateModules checks Config.Module and Config.Modules.
func validateModules(module string, modules []string) error {
	if module == "" && len(modules) == 0 {
		return fmt.Errorf("pypool: Config.Module is empty: name the Python module whose functions you call, e.g. \"my_module\"")
	}
	seen := make(map[string]bool, len(modules)+1)
	for i, name := range append([]string{module}, modules...) {
		field := "Config.Module"
		if i > 0 {
			field = fmt.Sprintf("Config.Modules[%d]", i-1)
		} else if name == "" {
			continue
		}
		if !moduleName.MatchString(name) {
			return fmt.Errorf("pypool: %s %q is not a Python module name such as \"my_module\" or \"package.module\"", field, name)
		}
		if seen[name] {
			return fmt.Errorf("pypool: %s %q is listed twice in Config.Module and Config.Modules", field, name)
		}
		seen[name] = true
	}
	return nil
}

// modules returns the modules whose functions can be called, the one that
// plain names resolve in (Module, else Modules[0]) first.
func (c Config) modules() []string {
	if c.Module == "" {
		return c.Modules
	}
	return append([]string{c.Module}, c.Modules...)
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// env is the workers' environment: what Config.InheritEnv lets through of
// the Go program's (all of it when nil), plus Config.Env.
func (c Config) env() []string {
	if c.InheritEnv == nil {
		return append(os.Environ(), c.Env...)
	}
	return append(inheritedEnv(os.Environ(), c.InheritEnv), c.Env...)
}

// pythonPathDirs returns PythonPath's directories, the relative ones made
// absolute from Dir (or, when Dir is empty, the Go program's working
// directory), as the workers get them.
func (c Config) pythonPathDirs() ([]string, error) {
	if len(c.PythonPath) == 0 {
		return nil, nil
	}
	base := c.Dir
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("pypool: resolving Config.PythonPath: %w", err)
		}
		base = wd
	}
	dirs := make([]string, len(c.PythonPath))
	for i, dir := range c.PythonPath {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(base, dir)
		}
		dirs[i] = dir
	}
	return dirs, nil
}

// checkDir returns an error, wrapping ErrWorkerStart, unless Dir is empty
// or an existing directory: a worker started in a missing one fails with
// an error of exec's that names only the interpreter.
func (c Config) checkDir() error {
	if c.Dir == "" {
		return nil
	}
	info, err := os.Stat(c.Dir)
	if err == nil && !info.IsDir() {
		err = fmt.Errorf("%s is not a directory", c.Dir)
	}
	if err != nil {
		return fmt.Errorf("%w: Config.Dir %q, the workers' working directory: %w; create it, or set Config.Dir to an existing directory (empty: the Go program's)", ErrWorkerStart, c.Dir, err)
	}
	return nil
}

// spec builds the worker specification from a validated Config.
func (c Config) spec(python *interpreter, codeDir string) (*workerSpec, error) {
	paths, err := c.pythonPathDirs()
	if err != nil {
		return nil, err
	}
	modules := c.modules()
	args := []string{"-I", "-c", bootstrap} // the runtime's directory comes on stdin (release)
	for _, module := range modules {
		args = append(args, "--module", module)
	}
	args = append(args, "--max-message", strconv.Itoa(c.MaxMessageSize))
	if c.SetUp != "" {
		setUp, err := setUpArgs(c)
		if err != nil {
			return nil, err
		}
		args = append(args, "--setup", c.SetUp)
		if setUp != "" {
			args = append(args, "--setup-args", setUp)
		}
	}
	sharedThreshold := 0
	if c.SharedMemoryThreshold > 0 && sharedMemorySupported() {
		sharedThreshold = c.SharedMemoryThreshold
		args = append(args, "--shm-fd", strconv.Itoa(sharedMemoryFd), "--shm-threshold", strconv.Itoa(sharedThreshold),
			"--shm-limit", strconv.Itoa(sharedLimit(c.MaxMessageSize)))
	}
	args = append(args, c.Limits.args()...)
	if c.AsyncCalls > 0 {
		args = append(args, "--async-calls", strconv.Itoa(c.AsyncCalls))
	}
	if codeDir != "" {
		args = append(args, "--path", codeDir)
	}
	for _, dir := range paths {
		args = append(args, "--path", dir)
	}
	return &workerSpec{
		python:          python,
		args:            args,
		env:             c.env(),
		dir:             c.Dir,
		credential:      c.Credential,
		module:          strings.Join(modules, ", "),
		setUp:           c.SetUp,
		pythonFS:        c.pythonFSRef(),
		maxMessageSize:  c.MaxMessageSize,
		codec:           valueCodec{structTag: c.StructTag, exts: newExtRegistry(c.Extensions)},
		sharedThreshold: sharedThreshold,
		startTimeout:    c.StartTimeout,
		logger:          c.Logger,
		callbacks:       c.callbacks(),
		interruptGrace:  c.InterruptGrace,
		stacks:          newStackLimiter(c.StackDumps, c.StackDumpInterval),
		preload:         c.Preload,
		preloadSetUp:    c.PreloadSetUp,
		asyncCalls:      c.AsyncCalls,
	}, nil
}

// callbacks copies Config.Callbacks (nil when there are none), so that
// the map the caller keeps may change without a race.
func (c Config) callbacks() map[string]Callback {
	if len(c.Callbacks) == 0 {
		return nil
	}
	m := make(map[string]Callback, len(c.Callbacks))
	for name, cb := range c.Callbacks {
		m[name] = cb
	}
	return m
}

// setUpArgs encodes Config.SetUpArgs for the worker's command line: base64
// of msgpack [args, kwargs|nil], "" when there are none.
func setUpArgs(c Config) (string, error) {
	if len(c.SetUpArgs) == 0 {
		return "", nil
	}
	args, kwargs := splitKwargs(c.SetUpArgs)
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.SetCustomStructTag(c.StructTag)
	var kw any
	if kwargs != nil {
		kw = map[string]any(kwargs)
	}
	if err := enc.Encode([]any{args, kw}); err != nil {
		return "", fmt.Errorf("pypool: Config.SetUpArgs: %w: %v", ErrArgNotEncodable, err)
	}
	boundFarTimes(buf.Bytes())
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// pythonFSRef is Config.PythonFS for the hint of a module that did not
// import; nil when there is no PythonFS.
func (c Config) pythonFSRef() *pythonFSRef {
	if c.PythonFS == nil {
		return nil
	}
	return &pythonFSRef{fsys: c.PythonFS, root: c.PythonFSRoot, modules: c.modules()}
}

// installPythonFS writes Config.PythonFS's files under the install base and
// returns their directory, "" when there is no PythonFS.
func (c Config) installPythonFS() (string, error) {
	if c.PythonFS == nil {
		return "", nil
	}
	t, err := install.FromFS("python", c.PythonFS, c.PythonFSRoot)
	if err != nil {
		return "", fmt.Errorf("pypool: reading Config.PythonFS: %w", err)
	}
	return install.Install(c.InstallDir, t)
}
