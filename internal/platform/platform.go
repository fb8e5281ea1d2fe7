// Package platform is imported by every package of pypool that calls the
// operating system, so that on a platform pypool does not support the build
// stops at one clear message (unsupported.go) instead of a list of
// undefined system calls. pypool supports Linux and macOS: see
// docs/platforms.md.
package platform
