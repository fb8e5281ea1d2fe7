package pypool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"

	"github.com/pypool/pypool/internal/install"
)

// Sentinel errors. Test for them with errors.Is; the errors returned by this
// package wrap them with the details of the case.
var (
	// ErrPoolClosed is returned by calls made after Close began, and by calls
	// whose worker Close had to stop because its context ended first: those
	// do not match ErrWorkerCrashed (the pool stopped the worker).
	ErrPoolClosed = errors.New("pypool: pool closed")

	// ErrWorkerCrashed is returned when the worker process died during the
	// call. The error is a *WorkerExitError with the exit status and the last
	// lines the worker wrote to stderr.
	ErrWorkerCrashed = errors.New("pypool: worker crashed")

	// ErrWorkerStart is returned when a worker could not be started: the
	// interpreter is missing, the module failed to import (the error then
	// also wraps a *PythonError with the traceback), the host ran out of
	// descriptors, processes or memory, or the worker died (a
	// *WorkerExitError) or timed out during the handshake. A running pool
	// gives every waiting caller only the failures known to repeat (the
	// first two, a set-up that raised, an interpreter that cannot run or
	// does not speak the handshake); the others are retried (see
	// docs/errors.md).
	ErrWorkerStart = errors.New("pypool: worker failed to start")

	// ErrArgNotEncodable is returned when an argument can not be encoded as
	// msgpack (channels, functions, complex numbers, ...). Nothing was sent;
	// the worker is unaffected.
	ErrArgNotEncodable = errors.New("pypool: argument not encodable")

	// ErrResultNotDecodable is returned when the result can not be decoded
	// into the requested Go type.
	ErrResultNotDecodable = errors.New("pypool: result not decodable")

	// ErrResultNotEncodable is returned (inside a *PythonError) when Python
	// can not encode the function's result, for example a set or an instance
	// of a custom class. The message says where the value is and names its
	// type; the Hint says what to convert it to, or which hook of the
	// Python runtime (set_default, register_ext with Config.Extensions)
	// makes it encodable.
	ErrResultNotEncodable = errors.New("pypool: result not encodable by Python")

	// ErrFunctionNotFound is returned (inside a *PythonError) when the name
	// is not a public function of the configured module(s): it does not
	// exist, starts with an underscore, is dotted beyond a configured module
	// ("os.system"), or belongs to a module not configured.
	ErrFunctionNotFound = errors.New("pypool: function not found")

	// ErrBadArguments is returned (inside a *PythonError) when Python could
	// not decode the arguments, for example a Go string that is not valid
	// UTF-8.
	ErrBadArguments = errors.New("pypool: arguments not decodable by Python")

	// ErrMessageTooLarge is returned when a call or its reply is larger than
	// Config.MaxMessageSize.
	ErrMessageTooLarge = errors.New("pypool: message too large")

	// ErrPoolExhausted is returned at once by a call that sheds load (any
	// call form, Transaction or Ping with NoWait, TryCall, or any call when
	// Config.MaxWaiting is NoWaiting) when no worker is idle and
	// Size+MaxOverflow workers run, and by any call when Config.MaxWaiting
	// callers already wait. Its message names the rule that refused the
	// call and what to change to refuse fewer.
	ErrPoolExhausted = errors.New("pypool: pool exhausted")

	// ErrProtocol is returned when a worker sent something that does not
	// follow the protocol, or broke the memory it shares with the Go
	// process (grew it beyond its limit, or sent a reference into it that
	// is malformed or out of range). The worker is replaced.
	ErrProtocol = errors.New("pypool: protocol violation")

	// ErrWorkerReleased is returned when a Worker is used after its
	// transaction ended, or after one of its calls was cut off.
	ErrWorkerReleased = errors.New("pypool: worker used outside its transaction")

	// ErrWorkerBusy is returned by a call that would need a worker which is
	// busy on the caller's own behalf: a Worker's call from the body of a
	// loop over its Stream, or a call made with a callback's context while
	// another call made with that context is in flight (they run one at a
	// time on the worker that waits for the callback). Nothing was sent.
	ErrWorkerBusy = errors.New("pypool: worker busy with the caller's own stream or call")
)

// PythonError is an exception raised in Python, or a refusal of the Python
// runtime (unknown function, unencodable result, ...). The worker that
// reported it stays in the pool.
type PythonError struct {
	// Code says who raised the error: "exception" for the user's code,
	// otherwise the runtime's reason ("function_not_found",
	// "bad_arguments", "result_not_encodable", "not_an_iterator",
	// "message_too_large", "import_failed", "setup_failed",
	// "loop_failed" (the event loop of Config.AsyncCalls did not start),
	// "start_failed" (the runtime's own start did not fit in memory),
	// "interrupted").
	Code string
	// Type is the exception class: "ValueError", or "package.module.Class".
	Type string
	// Message is str(exception) for an exception of the user's code, of
	// its import, of its set-up or of its event loop's start (Codes
	// "exception", "interrupted", "import_failed", "setup_failed",
	// "loop_failed"); for a refusal of the runtime, what it refused and
	// why.
	Message string
	// Traceback is the formatted Python traceback, without the runtime's own
	// frames; empty for a refusal of the runtime.
	Traceback string
	// Hint is what the runtime adds to say how to fix the error, empty
	// when it has nothing to add: the interpreter that ran and what to
	// install for a module not found, where the import looked, how to
	// return a value of an unsupported type, what Stream needs, which
	// limit (Config.Limits) to raise.
	Hint string
}

// Error returns the exception type and message in one line, with the
// package's prefix, and the hint after a semicolon; the traceback is in
// the Traceback field, and %+v prints it too.
func (e *PythonError) Error() string {
	return fmt.Sprintf("pypool: python %s: %s", e.Type, e.text())
}

// text is the message, followed by the hint if there is one (the hint
// alone after an empty message).
func (e *PythonError) text() string {
	switch {
	case e.Hint == "":
		return e.Message
	case e.Message == "": // a MemoryError's
		return e.Hint
	}
	return e.Message + "; " + e.Hint
}

// Format prints Error() for %v and %s, and Error() followed by the Python
// traceback for %+v.
func (e *PythonError) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('+') && e.Traceback != "":
		fmt.Fprintf(s, "%s\n%s", e.Error(), strings.TrimRight(e.Traceback, "\n"))
	case verb == 'q':
		fmt.Fprintf(s, "%q", e.Error())
	default:
		io.WriteString(s, e.Error())
	}
}

// Unwrap lets errors.Is match the runtime's refusals against the sentinels
// ErrFunctionNotFound, ErrBadArguments, ErrResultNotEncodable and
// ErrMessageTooLarge.
func (e *PythonError) Unwrap() error {
	switch e.Code {
	case "function_not_found":
		return ErrFunctionNotFound
	case "bad_arguments":
		return ErrBadArguments
	case "result_not_encodable":
		return ErrResultNotEncodable
	case "message_too_large":
		return ErrMessageTooLarge
	}
	return nil
}

// WorkerExitError describes a worker process that exited. It wraps
// ErrWorkerCrashed (or ErrWorkerStart when it died during its handshake).
type WorkerExitError struct {
	Pid int
	// ExitCode is the process's exit status, or -1 when a signal ended it.
	ExitCode int
	// Signal names the signal that ended the process, if one did.
	Signal string
	// Stderr holds the last lines the worker wrote to stderr.
	Stderr []string

	sig   syscall.Signal // the signal Signal names; 0: none, or unknown
	cause error
}

// Error describes the exit in one line, as os/exec's ExitError does,
// naming a signal as C does ("was killed by SIGKILL"); the last lines of
// the worker's stderr are in the Stderr field.
func (e *WorkerExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("%v: python worker %d was killed by %s", e.cause, e.Pid, e.signalText())
	}
	return fmt.Sprintf("%v: python worker %d exited with status %d", e.cause, e.Pid, e.ExitCode)
}

// signalText names the signal that ended the process as C does
// ("SIGKILL"), with what Signal adds in parentheses; Signal itself when
// the signal is unknown.
func (e *WorkerExitError) signalText() string {
	if e.sig == 0 {
		return e.Signal
	}
	name := signalName(e.sig)
	if _, note, ok := strings.Cut(e.Signal, " ("+name+": "); ok {
		return name + " (" + note
	}
	return name
}

// Unwrap returns ErrWorkerCrashed or ErrWorkerStart.
func (e *WorkerExitError) Unwrap() error { return e.cause }

// closedError is the error of a call whose worker Close stopped while the
// call ran, because Close's context ended before the call did (Pool.Close
// lets calls in flight finish until then). It wraps ErrPoolClosed only:
// the pool stopped the worker, it did not crash.
type closedError struct {
	pid   int
	fn    string
	kind  string // what ran: "call" or "stream" (exchange.kind)
	probe bool   // Pool.Ping's
}

// Error says what Close did and how to let running calls finish, once.
func (e *closedError) Error() string {
	what := e.fn + "()"
	switch {
	case e.probe:
		what = "a Ping"
	case e.kind == "stream":
		what = "the stream " + what
	}
	return fmt.Sprintf("%v: Close stopped worker %d while it ran %s (Close's context ended first); to let running calls finish, give Close a longer context",
		ErrPoolClosed, e.pid, what)
}

// Unwrap returns ErrPoolClosed.
func (e *closedError) Unwrap() error { return ErrPoolClosed }

// importError is the start error of a worker whose module failed to import,
// whose set-up function (Config.SetUp) raised, or whose event loop
// (Config.AsyncCalls) did not start:
// one line that says so once, wrapping ErrWorkerStart and the *PythonError
// that holds the traceback.
type importError struct {
	module string
	setUp  string // Config.SetUp
	err    *PythonError
	// fsHint is what Config.PythonFS holds where the module was looked
	// for, when that explains the failure (pythonFSRef.hint); "" otherwise.
	fsHint string
}

// Error is the import failure as the pool reports it: the module or the
// set-up once, then the exception's type, message and hints.
func (e *importError) Error() string {
	text := e.err.text()
	if e.fsHint != "" {
		text += "; " + e.fsHint
	}
	switch e.err.Code {
	case "setup_failed":
		return fmt.Sprintf("%v: the set-up %s.%s failed (Config.SetUp): python %s: %s (the traceback is in the *PythonError)",
			ErrWorkerStart, e.module, e.setUp, e.err.Type, text)
	case "loop_failed":
		return fmt.Sprintf("%v: the worker could not start its event loop's thread (Config.AsyncCalls): python %s: %s (the traceback is in the *PythonError)",
			ErrWorkerStart, e.err.Type, text)
	case "start_failed":
		return fmt.Sprintf("%v: the worker ran out of memory in the runtime's own start, after its module's import: python %s: %s",
			ErrWorkerStart, e.err.Type, text)
	}
	if strings.Contains(e.module, ", ") { // Config.Modules: the hint names the module that failed
		return fmt.Sprintf("%v: importing modules %s failed: python %s: %s (the traceback is in the *PythonError)",
			ErrWorkerStart, e.module, e.err.Type, text)
	}
	return fmt.Sprintf("%v: importing module %q failed: python %s: %s (the traceback is in the *PythonError)",
		ErrWorkerStart, e.module, e.err.Type, text)
}

// Format prints Error() for %v and %s, and Error() followed by the Python
// traceback for %+v, as a *PythonError does: the error New returns prints
// the import's or the set-up's traceback without an errors.As first.
func (e *importError) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('+') && e.err.Traceback != "":
		fmt.Fprintf(s, "%s\n%s", e.Error(), strings.TrimRight(e.err.Traceback, "\n"))
	case verb == 'q':
		fmt.Fprintf(s, "%q", e.Error())
	default:
		io.WriteString(s, e.Error())
	}
}

// Unwrap gives ErrWorkerStart and the Python error, for errors.Is/As.
func (e *importError) Unwrap() []error { return []error{ErrWorkerStart, e.err} }

// pythonFSRef is Config.PythonFS as a start error needs it: to say what the
// FS holds where the worker looked for a module that did not import.
type pythonFSRef struct {
	fsys    fs.FS
	root    string   // Config.PythonFSRoot
	modules []string // the configured modules
}

// hint says, for a module that did not import (err), what Config.PythonFS
// holds where the worker looked for it: a directory without __init__.py
// (//go:embed without all:), the module below another root
// (Config.PythonFSRoot), or nothing of that name. "" when r is nil, the
// error is not an import's, or every module is where it was looked for.
func (r *pythonFSRef) hint(err *PythonError) string {
	if r == nil || err.Code != "import_failed" || (err.Type != "ModuleNotFoundError" && err.Type != "ImportError") {
		return ""
	}
	for _, module := range r.modules {
		if hint := r.moduleHint(module); hint != "" {
			return hint
		}
	}
	return ""
}

// moduleHint is hint for one module.
func (r *pythonFSRef) moduleHint(module string) string {
	l := install.FindModule(r.fsys, r.root, module)
	switch {
	case l.File != "":
		return ""
	case l.Initless != "":
		return initlessHint(l.Initless, r.root)
	case l.Elsewhere != "":
		hint := fmt.Sprintf("the module is at %s in Config.PythonFS: set Config.PythonFSRoot to %q", l.Elsewhere, l.ElsewhereRoot)
		if l.ElsewhereRoot == "." {
			hint = fmt.Sprintf("the module is at %s in Config.PythonFS: set Config.PythonFSRoot to \"\" (the FS's top)", l.Elsewhere)
		}
		if !strings.HasSuffix(l.Elsewhere, ".py") {
			hint += "; " + initlessHint(l.Elsewhere, l.ElsewhereRoot)
		}
		return hint
	}
	below := "at its top"
	if r.root != "" {
		below = fmt.Sprintf("below Config.PythonFSRoot %q", r.root)
	}
	rel := strings.ReplaceAll(module, ".", "/")
	return fmt.Sprintf("Config.PythonFS has no %s.py or %s/ %s, nor anywhere else", rel, rel, below)
}

// initlessHint explains a package directory dir without __init__.py in
// Config.PythonFS, whose root (what //go:embed named) is root.
func initlessHint(dir, root string) string {
	pattern := root
	if pattern == "" || pattern == "." {
		pattern, _, _ = strings.Cut(dir, "/")
	}
	return fmt.Sprintf("Config.PythonFS has %s/ but no %s/__init__.py: //go:embed %s skips files whose names start with _ or .; write //go:embed all:%s",
		dir, dir, pattern, pattern)
}
