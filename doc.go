// Package pypool calls Python functions from Go through a supervised pool of
// long-lived python3 worker processes.
//
// A [Pool] keeps [Config.Size] workers running, starts up to
// [Config.MaxOverflow] more under load, and replaces any worker that
// crashes. Each worker imports [Config.Module] once; [Pool.Call] runs one of
// its public functions in one worker at a time:
//
//	pool, err := pypool.New(ctx, pypool.Config{
//		Module:     "my_module",   // import my_module
//		PythonPath: []string{"."}, // from this directory
//	})
//	if err != nil {
//		return err
//	}
//	defer pool.Close(context.Background())
//	out, err := pool.Call(ctx, "duplicate_text", "testing") // "testingtesting"
//
// The Python side needs nothing but the standard library: the worker runtime
// ships inside this package (it uses the msgpack C extension when it happens
// to be importable). The README (https://github.com/pypool/pypool#readme) is
// the first read: set-up, a first program, a tour. The manual is in docs/
// (https://github.com/pypool/pypool/tree/main/docs): configuration, types,
// streaming and callbacks, errors, operating a pool in production,
// observability, security, the fork server, scaling out, and a migration
// table from poolboy and ErlPort; the benchmark report is bench/README.md.
//
// # Calling Python
//
//   - [New] starts the pool and returns when Size workers have imported the
//     module; [Pool.Close] stops it, letting calls in flight finish until its
//     context ends.
//   - [Pool.Call] waits for a free worker (until ctx ends) and returns the
//     result as a Go value; [CallAs] decodes the result straight into a T;
//     [CallBytes] appends a bytes result to a buffer you reuse. A trailing
//     [Kwargs] argument becomes Python keyword arguments.
//   - [NoWait] makes any call (Call, CallAs, CallBytes, Stream, StreamAs,
//     Transaction, Ping) shed load instead of queueing: with all
//     Size+MaxOverflow workers busy it fails at once with
//     [ErrPoolExhausted], so that a service can answer 503 instead of
//     building a queue. [Pool.TryCall] is Call with NoWait, and
//     [Config.MaxWaiting] set to [NoWaiting] makes every call on the pool
//     shed. Callers that wait are served first (a checked-in worker goes
//     to the caller waiting longest), so on a pool shared with them calls
//     with NoWait are refused for as long as a queue exists: give
//     sheddable calls a pool of their own, or let every caller wait in a
//     queue bounded by MaxWaiting and deadlines (docs/operating.md).
//   - [Pool.Transaction] pins one worker for several calls that must run in
//     the same Python process, through the [Worker] it passes to its
//     function.
//   - [Pool.Stream] (and [StreamAs], [Worker.Stream]) iterates a Python
//     generator from a Go range loop, item by item as Python produces them,
//     with flow control; breaking out closes the generator.
//   - [Config.Callbacks] registers Go functions that Python code calls
//     during a call with call_go (from pypool import call_go); calls made
//     with a callback's context run on the waiting worker, so they nest.
//   - [Config.PythonFS] ships the Python code inside the Go binary (an
//     embed.FS), written once per content under [Config.InstallDir] and
//     verified before use; [Config.Modules] exposes more modules, called
//     as "module.function".
//   - [Pool.Ping] makes a round trip through a worker for readiness probes;
//     [Pool.Stats] is a cheap snapshot of the pool's state and counters, and
//     [Stats.Status] names it as poolboy's status/1 does.
//
// # Contexts and deadlines
//
// A call's context bounds the whole call: the wait for a worker and the
// Python function. When it ends while Python runs, the call returns ctx's
// error at once and the worker is sent a KeyboardInterrupt (an async
// function's task is cancelled instead: it gets CancelledError where it
// awaits); a worker that does not answer within [Config.InterruptGrace] is
// killed and replaced.
// [Config.CallTimeout] bounds calls whose context has no deadline.
//
// The context of [Pool.Transaction] bounds the checkout only, as with pgx's
// AcquireFunc and [database/sql.DB.Conn]: it limits how long
// Transaction waits for a worker, and once the worker is checked out it no
// longer matters. Each call inside the transaction is bounded by the context
// given to that [Worker.Call] (or [CallAs] on the Worker), with
// [Config.CallTimeout] when that context has no deadline; how long the
// worker stays checked out is up to the function, which should therefore
// not block on anything but its calls.
//
// # Types
//
// Arguments are encoded as msgpack; results decode as follows with
// [Pool.Call] (with [CallAs], msgpack's rules for the target type apply):
//
//	Go argument              Python receives        Python returns             Call gives Go
//	-----------              ---------------        --------------             -------------
//	nil                      None                   None                       nil
//	bool                     bool                   bool                       bool
//	int…int64, uint…uint64   int                    int in [-2^63, 2^64-1]     int64 (uint64 above MaxInt64)
//	float32, float64         float                  float                      float64
//	                                                numpy scalars              as their .item()
//	string (valid UTF-8)     str                    str                        string
//	[]byte                   bytes                  bytes, bytearray,          []byte
//	                                                memoryview
//	slices, arrays           list                   list, tuple                []any
//	maps                     dict                   dict                       map[string]any, or map[any]any
//	                                                                           when a key is not a string
//	structs                  dict (field names or
//	                         msgpack tags)
//	time.Time                datetime (aware, UTC)  aware datetime             time.Time in UTC
//	Array, ArrayOf(slice)    numpy.ndarray          numpy.ndarray (bool,       Array
//	                                                (u)int8…64, float32/64)
//	a Config.Extensions type its registered class   a registered class         the Go type
//	                                                an awaitable (what an      what its result gives
//	                                                async def returns)
//
// Bytes stay bytes and strings stay strings both ways. Python ints beyond 64
// bits, naive datetimes, sets and other objects can not be encoded: the call
// fails with an error wrapping [ErrResultNotEncodable] that says where the
// value is. See [Array] and [ArrayOf] for numpy arrays, [Ext] and
// [Config.Extensions] for types of your own, and
// [Config.SharedMemoryThreshold] for large bytes and arrays.
//
// # Errors
//
// Every call ends with exactly one outcome, and never later than its
// context's deadline: a result, or an error that [errors.Is] and
// [errors.As] tell apart.
//
//   - A Python exception is a [*PythonError] with the exception's Type,
//     Message and Traceback (printed by %+v). The worker stays in the pool.
//     Refusals of the Python runtime are *PythonError values too, and
//     match [ErrFunctionNotFound], [ErrBadArguments] and
//     [ErrResultNotEncodable].
//   - A worker that died during the call gives [ErrWorkerCrashed]; the
//     [*WorkerExitError] in the chain has its exit status, signal and last
//     stderr lines. The pool has already replaced the worker; with
//     [Config.CrashRetries], Call tries idempotent calls again on another
//     worker.
//   - A worker that can not start gives [ErrWorkerStart], from [New] or
//     from a call waiting for a start; when the module failed to import,
//     the chain also holds the [*PythonError] with the traceback, and a
//     worker that exited during its start gives a [*WorkerExitError].
//     Restarts back off, and the pool heals by itself once the cause is
//     fixed. A waiting call gets a transient failure (no descriptors for
//     the moment, a worker killed while it started) only when the retry
//     would come after its deadline, or when the failures have gone on
//     until the backoff reached its maximum.
//   - An ended context gives [context.DeadlineExceeded] or
//     [context.Canceled] (errors.Is), whether it ended while waiting for a
//     worker or while Python ran.
//   - [ErrPoolExhausted] (a call with NoWait, or TryCall, with every
//     worker busy, or [Config.MaxWaiting] callers already waiting),
//     [ErrPoolClosed] (after Close), [ErrArgNotEncodable],
//     [ErrResultNotDecodable], [ErrMessageTooLarge], [ErrProtocol] (the
//     worker is replaced) and
//     [ErrWorkerReleased] (a Worker used after its transaction) say what
//     their names say.
//
// # Pool semantics
//
// The pool follows poolboy: at rest exactly Size workers run, all idle;
// under load at most Size+MaxOverflow worker processes, workers being
// stopped included (one holds its slot until it has exited); a worker
// checked in while overflow workers exist and nobody waits is stopped,
// unless [Config.OverflowIdleTimeout] keeps it; no caller waits while a
// worker is idle; a worker that dies frees its slot at once and is replaced without a
// caller having to ask. No process outlives the pool: Close reaps every
// worker; on Linux a worker's process group (what its Python code started)
// is killed after each of its exits; and the workers and their groups die
// with the Go process, even by SIGKILL: a small guardian process per pool
// kills them (and a parent-death signal on Linux, end of input elsewhere).
// A process that leaves its group (setsid) is not reached.
//
// # Security
//
// Arguments from callers are untrusted input: only the module's public
// functions can be called, and every decoder bounds what it reads. The
// Python code is trusted code, with the privileges you give the workers:
// their sys.path is [Config.PythonPath], then the interpreter's standard
// library and site-packages (the working directory is not on it unless
// listed, and nothing of the runtime can be shadowed); [Config.InheritEnv]
// restricts the environment they inherit, [Config.Limits] bounds their
// memory, CPU time and open files, and [Config.Credential] runs them as
// another user. pypool is no sandbox; docs/security.md says how to
// build one from these and a container.
package pypool
