package pypool

// install.go is the pool's side of internal/install, which writes and
// verifies the Python runtime and Config.PythonFS under the install base:
// the error New returns when that base is unsafe.

import "github.com/pypool/pypool/internal/install"

// ErrUnsafeInstallDir is returned by New when the directory where pypool
// would write its Python runtime and Config.PythonFS (Config.InstallDir or
// its default) could be written by another user: it, or one of its
// parents, is owned by someone else (root excepted) or writable by group
// or others (a sticky parent such as /tmp excepted). Nothing is written
// there; choose another Config.InstallDir or fix the modes.
var ErrUnsafeInstallDir = install.ErrUnsafeDir
