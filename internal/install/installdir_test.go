package install

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nobodyUID is the uid of "nobody": a home chowned to it stands for the
// home of another user.
const nobodyUID = 65534

// requireRoot skips a test that must chown to another user, saying why.
func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("chowning to uid %d needs root; this test runs as uid %d", nobodyUID, os.Geteuid())
	}
}

// defaultEnv points HOME at home, unsets XDG_CACHE_HOME and gives the temp
// directory's base a directory of its own; it returns the base expected
// there.
func defaultEnv(t *testing.T, home string) (tmpBase string) {
	tmp := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("TMPDIR", tmp)
	return filepath.Join(tmp, "pypool-"+strconv.Itoa(os.Geteuid()))
}

// entries lists dir's names.
func entries(t *testing.T, dir string) []string {
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestDefaultBaseNeverInAnotherUsersHome (issue 20): run as root with the
// HOME of another user, the default base is the temp directory's, nothing
// is created in that home, and the fallback says why (Unsafe). A
// .cache/pypool of this user left there by an older version is not used
// either: its parent could be moved by the home's owner.
func TestDefaultBaseNeverInAnotherUsersHome(t *testing.T) {
	requireRoot(t)
	home := t.TempDir()
	require.NoError(t, os.Chown(home, nobodyUID, nobodyUID))
	tmpBase := defaultEnv(t, home)

	base, fallback, err := installBase("")
	require.NoError(t, err)
	assert.Equal(t, tmpBase, base)
	require.NotNil(t, fallback)
	assert.Equal(t, Fallback{Wanted: filepath.Join(home, ".cache", "pypool"), Used: tmpBase, Unsafe: true,
		Reason: home + " is owned by uid 65534, neither root nor this user (uid 0)"}, *fallback)
	assert.Empty(t, entries(t, home), "nothing is created in the home of another user")

	require.NoError(t, os.MkdirAll(filepath.Join(home, ".cache", "pypool"), 0o755))
	base, fallback, err = installBase("")
	require.NoError(t, err)
	assert.Equal(t, tmpBase, base)
	require.NotNil(t, fallback)
	assert.True(t, fallback.Unsafe)
}

// TestDefaultBaseUnwritableCache: a user cache directory that cannot be
// made is not used; the fallback says why, and it is not Unsafe.
func TestDefaultBaseUnwritableCache(t *testing.T) {
	home := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, ".cache"), nil, 0o644))
	tmpBase := defaultEnv(t, home)
	base, fallback, err := installBase("")
	require.NoError(t, err)
	assert.Equal(t, tmpBase, base)
	require.NotNil(t, fallback)
	assert.False(t, fallback.Unsafe)
	assert.Contains(t, fallback.Reason, "not a directory")
	assert.Equal(t, []string{".cache"}, entries(t, home))
}

// TestDefaultBaseCacheDirectory: the user cache directory's pypool is
// created and used, XDG_CACHE_HOME first, without a fallback.
func TestDefaultBaseCacheDirectory(t *testing.T) {
	home := t.TempDir()
	defaultEnv(t, home)
	base, fallback, err := installBase("")
	require.NoError(t, err)
	assert.Nil(t, fallback)
	assert.Equal(t, filepath.Join(home, ".cache", "pypool"), base)

	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	base, fallback, err = installBase("")
	require.NoError(t, err)
	assert.Nil(t, fallback)
	assert.Equal(t, filepath.Join(cache, "pypool"), base)
}

// TestConfiguredBaseUnderAnotherUserCreatesNothing: Config.InstallDir
// below a directory of another user is ErrUnsafeDir, never a fallback,
// and nothing is created there.
func TestConfiguredBaseUnderAnotherUserCreatesNothing(t *testing.T) {
	requireRoot(t)
	theirs := t.TempDir()
	require.NoError(t, os.Chown(theirs, nobodyUID, nobodyUID))
	_, fallback, err := installBase(filepath.Join(theirs, "a", "pypool"))
	require.ErrorIs(t, err, ErrUnsafeDir)
	assert.Nil(t, fallback)
	assert.Contains(t, err.Error(), "Config.InstallDir")
	assert.Contains(t, err.Error(), "owned by uid 65534")
	assert.Empty(t, entries(t, theirs))
}

// TestInstallRecordsTheFallbackOnce: Install gives the fallback of the
// default base to TakeFallback once per process.
func TestInstallRecordsTheFallbackOnce(t *testing.T) {
	tmpBase := defaultEnv(t, "")
	installs.Lock()
	delete(installs.bases, "")
	installs.Unlock()
	t.Cleanup(func() {
		installs.Lock()
		delete(installs.bases, "")
		installs.fallback = nil
		installs.Unlock()
	})
	_, err := Install("", testTree())
	require.NoError(t, err)
	_, err = Install("", NewTree("python", map[string][]byte{"other.py": nil}))
	require.NoError(t, err)
	f, ok := TakeFallback()
	require.True(t, ok)
	assert.Equal(t, tmpBase, f.Used)
	assert.Empty(t, f.Wanted)
	assert.Contains(t, f.Reason, "no user cache directory")
	_, ok = TakeFallback()
	assert.False(t, ok, "once per process")
}
