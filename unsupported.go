package pypool

// The import stops the build on a platform pypool does not support (any but
// Linux and Darwin) with one message from internal/platform's
// unsupported.go, instead of a list of undefined system calls: see
// docs/platforms.md.
import _ "github.com/pypool/pypool/internal/platform"
