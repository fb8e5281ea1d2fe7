package pypool

// install.go is the pool's side of internal/install, which writes and
// verifies the Python runtime and Config.PythonFS under the install base:
// the error New returns when that base is unsafe, and the record of a
// default base that fell back to the temp directory.

import (
	"context"
	"log/slog"

	"github.com/pypool/pypool/internal/install"
)

// ErrUnsafeInstallDir is returned by New when the directory where pypool
// would write its Python runtime and Config.PythonFS (Config.InstallDir or,
// when the user cache directory cannot be used, pypool-<uid> in the temp
// directory) could be written by another user: it, or one of its parents,
// is owned by someone else (root excepted) or writable by group or others
// (a sticky parent such as /tmp excepted). Nothing is created or written
// there; choose another Config.InstallDir or fix the modes. A user cache
// directory that is unsafe is not an error: it is not used, and New logs
// why (docs/security.md, "The install directory").
var ErrUnsafeInstallDir = install.ErrUnsafeDir

// msgInstallFallback is the record of a default install base that is not
// the user cache directory's, once per process: Warn when that directory
// could be written by another user, Info when it cannot be written (a
// read-only home), Debug when there is none (no HOME).
const msgInstallFallback = "pypool: not installing in the user cache directory; using the temp directory"

// installFix is what the record of a fallback advises.
const installFix = "set Config.InstallDir, or XDG_CACHE_HOME, to a directory this user owns and can write"

// logInstallFallback logs, once per process, to the Config.Logger of the
// pool whose New chose the default install base, why it is not the user
// cache directory's (install.TakeFallback).
func logInstallFallback(log *slog.Logger) {
	f, ok := install.TakeFallback()
	if !ok {
		return
	}
	level := slog.LevelDebug // no user cache directory at all: the default of many services
	switch {
	case f.Unsafe:
		level = slog.LevelWarn
	case f.Wanted != "":
		level = slog.LevelInfo // a home that cannot be written: said at the default level, never silent
	}
	attrs := []any{"install_dir", f.Used}
	if f.Wanted != "" {
		attrs = append(attrs, "not_used", f.Wanted)
	}
	log.Log(context.Background(), level, msgInstallFallback, append(attrs, "reason", f.Reason, "fix", installFix)...)
}
