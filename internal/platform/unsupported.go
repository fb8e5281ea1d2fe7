//go:build !linux && !darwin

package platform

// unsupported stops the build of pypool here on purpose: it runs its workers
// with Linux and macOS system calls (process groups, flock, O_NOFOLLOW,
// pipes passed by descriptor), and no other platform is supported or tested.
// See docs/platforms.md.
var unsupported int = "pypool runs only on Linux and macOS: see docs/platforms.md"
