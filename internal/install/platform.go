package install

// The import stops the build on an unsupported platform with one message
// (internal/platform) before this package's system calls fail to compile.
import _ "github.com/pypool/pypool/internal/platform"
