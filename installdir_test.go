package pypool

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// installChildEnv makes TestInstallFallbackLoggedOnce, in the test binary
// it starts, start pools in a fresh process (the install base is chosen
// once per process) and log to stdout as JSON.
const installChildEnv = "PYPOOL_TEST_INSTALL_CHILD"

// nobodyUID is the uid of "nobody": a home chowned to it stands for the
// home of another user.
const nobodyUID = 65534

// TestInstallFallbackLoggedOnce (issue 20, "errors that name the fix"): a
// default install base that cannot be the user cache directory's is the
// temp directory's, said once per process in the first pool's log, with
// the reason and the fix: at Warn when the home is another user's (and
// then nothing is created in it), at Info when the cache directory cannot
// be made, at Debug when there is no home. Before, pypool created a root-owned .cache/pypool in the home of
// another user and fell back without a word; a home where the cache
// directory could not be made fell back without a word too.
func TestInstallFallbackLoggedOnce(t *testing.T) {
	if os.Getenv(installChildEnv) != "" {
		installFallbackChild(t)
		return
	}
	cases := []struct {
		name   string
		home   func(t *testing.T) string
		level  string
		reason string
		left   []string // what the home holds afterwards
	}{
		{
			name: "home of another user",
			home: func(t *testing.T) string {
				if os.Geteuid() != 0 {
					t.Skipf("chowning a home to uid %d needs root; this test runs as uid %d", nobodyUID, os.Geteuid())
				}
				home := t.TempDir()
				require.NoError(t, os.Chown(home, nobodyUID, nobodyUID))
				return home
			},
			level:  "WARN",
			reason: "owned by uid " + strconv.Itoa(nobodyUID),
		},
		{
			name: "home where the cache directory cannot be made",
			home: func(t *testing.T) string {
				home := t.TempDir()
				require.NoError(t, os.WriteFile(filepath.Join(home, ".cache"), nil, 0o644))
				return home
			},
			level:  "INFO",
			reason: "not a directory",
			left:   []string{".cache"},
		},
		{
			name:   "no home (a service's default)",
			home:   func(t *testing.T) string { return "" },
			level:  "DEBUG",
			reason: "no user cache directory",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			home, tmp := c.home(t), t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestInstallFallbackLoggedOnce$", "-test.count=1")
			cmd.Env = append(os.Environ(), installChildEnv+"=1", "HOME="+home, "XDG_CACHE_HOME=", "TMPDIR="+tmp)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), "the child: %s\n%s", stdout.String(), stderr.String())

			var records []map[string]any
			scan := bufio.NewScanner(&stdout)
			for scan.Scan() {
				var r map[string]any
				if json.Unmarshal(scan.Bytes(), &r) == nil && r["msg"] == msgInstallFallback {
					records = append(records, r)
				}
			}
			require.Len(t, records, 1, "one record for the process, not one per pool: %s", stdout.String())
			r := records[0]
			t.Logf("%v", r)
			assert.Equal(t, c.level, r["level"])
			assert.Equal(t, filepath.Join(tmp, "pypool-"+strconv.Itoa(os.Geteuid())), r["install_dir"])
			assert.Contains(t, r["reason"], c.reason)
			assert.Contains(t, r["fix"], "Config.InstallDir")
			if home == "" {
				assert.NotContains(t, r, "not_used")
				return
			}
			assert.Equal(t, filepath.Join(home, ".cache", "pypool"), r["not_used"])
			var left []string
			entries, err := os.ReadDir(home)
			require.NoError(t, err)
			for _, e := range entries {
				left = append(left, e.Name())
			}
			assert.Equal(t, c.left, left, "nothing is created in the home")
		})
	}
}

// installFallbackChild starts two pools, one after the other, that log to
// stdout as JSON.
func installFallbackChild(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for range 2 {
		cfg := testConfig(t)
		cfg.Logger = log
		cfg.StartMethod = StartExec
		pool, err := New(testCtx(t), cfg)
		require.NoError(t, err)
		require.NoError(t, pool.Close(testCtx(t)))
	}
}
