package pypool

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnsupportedPlatformFailsWithOneMessage: building pypool for a
// platform it does not support stops at one compile error that names the
// platforms it supports (internal/platform's unsupported.go), not at a list
// of undefined system calls (issue 20).
func TestUnsupportedPlatformFailsWithOneMessage(t *testing.T) {
	for _, goos := range []string{"windows", "plan9"} {
		t.Run(goos, func(t *testing.T) {
			cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "the build for %s succeeded:\n%s", goos, out)
			errs := regexp.MustCompile(`(?m)^\S+\.go:\d+:\d+: `).FindAllString(string(out), -1)
			assert.Len(t, errs, 1, "one compile error for %s:\n%s", goos, out)
			assert.Contains(t, string(out), "pypool runs only on Linux and macOS: see docs/platforms.md")
			assert.True(t, strings.HasPrefix(string(out), "# github.com/pypool/pypool/internal/platform\n"), "the error is internal/platform's:\n%s", out)
		})
	}
}

// TestCompilesForDarwin: the package and its tests compile for macOS, the
// other supported platform (go vet type-checks the test files too).
func TestCompilesForDarwin(t *testing.T) {
	cmd := exec.Command("go", "vet", ".")
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "GOOS=darwin go vet .:\n%s", out)
}
