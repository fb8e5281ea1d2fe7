package pypool

// Tests of the pool's guardian (guardian.sh, guardian.go), ported from
// python/tests/test_guardian.py when the guardian became a shell script:
// its lines (apply), the kill at the end of its input (kill_all, serve,
// EOF), its immunity to SIGINT, its descriptors and environment, and New's
// error without /bin/sh. The pool-level guarantees (a restarted guardian,
// the host's death) are ownership_test.go's and lifecycle_test.go's.

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// guardianShells are the POSIX shells found here that the guardian's script
// must run on: /bin/sh, and dash, bash (as sh) and busybox ash wherever
// they are installed.
func guardianShells() map[string][]string {
	shells := map[string][]string{"/bin/sh": {"/bin/sh"}}
	for _, name := range []string{"dash", "bash", "busybox"} {
		if path, err := exec.LookPath(name); err == nil {
			shells[name] = []string{path, "sh"} // argv[0] sh: bash in POSIX mode, busybox's ash
		}
	}
	return shells
}

// guardianKills runs the guardian's script on shell with input on its
// stdin, kill replaced by a function that prints its last argument, and
// returns the groups it would have killed at the end of its input, sorted.
func guardianKills(t *testing.T, shell []string, input string) []string {
	t.Helper()
	// A function is found before a regular built-in such as kill.
	script := "kill() { printf '%s\\n' \"$*\"; }\n" + guardianScript
	cmd := &exec.Cmd{Path: shell[0], Args: append(append([]string{}, shell[1:]...), "-c", script, guardianName), Env: guardianEnv, Dir: "/"}
	if len(shell) == 1 {
		cmd.Args = append([]string{shell[0]}, cmd.Args...)
	}
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%v: %s", cmd.Args[:2], stderr.String())
	require.Empty(t, stderr.String())
	var groups []string
	for _, line := range strings.Fields(strings.ReplaceAll(string(out), "\n", " ")) {
		if strings.HasPrefix(line, "-") && line != "-s" && line != "--" && line != "KILL" {
			groups = append(groups, strings.TrimPrefix(line, "-"))
		}
	}
	require.Equal(t, strings.Count(string(out), "\n"), len(groups), "one kill -s KILL -- -PGID per group: %q", out)
	require.Equal(t, strings.Count(string(out), "-s KILL -- -"), len(groups), "the form of each kill: %q", out)
	sort.Strings(groups)
	return groups
}

// TestGuardianScriptAppliesLines: +PGID adds a group, -PGID removes it, on
// every shell; spaces around a line, a CR before its newline, leading zeros
// and a last line without newline are tolerated; a group is owned once.
func TestGuardianScriptAppliesLines(t *testing.T) {
	for name, shell := range guardianShells() {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, []string{"11", "12"}, guardianKills(t, shell, "+10\n+11\r\n-10\n+12\n-99\n"))
			require.Equal(t, []string{"13", "14", "15"}, guardianKills(t, shell, " +13 \n\t+014\n+15"))
			require.Empty(t, guardianKills(t, shell, "+20\n+20\n-20\n"), "a group added twice is owned once")
			require.Equal(t, []string{"200"}, guardianKills(t, shell, "+20\n+200\n-20\n"))
			require.Equal(t, []string{"200", "2000"}, guardianKills(t, shell, "+200\n+20\n+2000\n-20\n-2\n"))
			require.Empty(t, guardianKills(t, shell, ""), "no input, no kill")
		})
	}
}

// TestGuardianScriptIgnoresWhatIsNotAGroup: a malformed line, and the
// groups 0 and 1, are ignored.
func TestGuardianScriptIgnoresWhatIsNotAGroup(t *testing.T) {
	lines := []string{"", "+", "+x", "10", "*10", "+1", "+0", "+00", "+01", "+-5", "-", "++5", "+1 0", "+12abc", "+ 5", "+5.0", "+0x10", "+*", "+$x", "+`id`"}
	for name, shell := range guardianShells() {
		t.Run(name, func(t *testing.T) {
			require.Empty(t, guardianKills(t, shell, strings.Join(lines, "\n")+"\n"))
		})
	}
}

// TestGuardianScriptManyGroups: a pool's thousand workers, half of them
// released.
func TestGuardianScriptManyGroups(t *testing.T) {
	var in strings.Builder
	var want []string
	for pgid := 1000; pgid < 2000; pgid++ {
		in.WriteString("+" + strconv.Itoa(pgid) + "\n")
	}
	for pgid := 1000; pgid < 2000; pgid++ {
		if pgid%2 == 0 {
			in.WriteString("-" + strconv.Itoa(pgid) + "\n")
		} else {
			want = append(want, strconv.Itoa(pgid))
		}
	}
	for name, shell := range guardianShells() {
		t.Run(name, func(t *testing.T) { require.Equal(t, want, guardianKills(t, shell, in.String())) })
	}
}

// testSleeper is a process in a group of its own, as a worker is.
type testSleeper struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's, once done is closed
}

func startSleeper(t *testing.T) *testSleeper {
	t.Helper()
	s := &testSleeper{cmd: exec.Command("sleep", "60"), done: make(chan struct{})}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, s.cmd.Start())
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.done })
	return s
}

// killed waits for s to exit and reports whether SIGKILL ended it.
func (s *testSleeper) killed(t *testing.T) bool {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("process %d still runs", s.cmd.Process.Pid)
	}
	var exit *exec.ExitError
	if !errors.As(s.err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func (s *testSleeper) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// testGuardian starts a guardian as a pool does, its log in the returned
// buffer (read it once the guardian was reaped).
func testGuardian(t *testing.T) (*guardian, *guardianProcess, *bytes.Buffer) {
	t.Helper()
	var logged bytes.Buffer
	g := &guardian{shell: guardianShell, logger: slog.New(slog.NewTextHandler(&logged, nil)), groups: make(map[int]struct{})}
	require.NoError(t, g.start(func(*guardianProcess) {}))
	gp := g.proc
	t.Cleanup(func() { g.stop(0) })
	return g, gp, &logged
}

// TestGuardianKillsOwnedGroupsAtEOF: at the end of its input the guardian
// kills the groups it owns, leaves a released one alone, and exits 0,
// quietly.
func TestGuardianKillsOwnedGroupsAtEOF(t *testing.T) {
	owned, released := startSleeper(t), startSleeper(t)
	g, gp, logged := testGuardian(t)
	g.own(owned.cmd.Process.Pid)
	g.own(released.cmd.Process.Pid)
	g.release(released.cmd.Process.Pid)
	g.stop(20 * time.Second)
	require.True(t, owned.killed(t), "the owned group was killed: %v", owned.err)
	require.True(t, released.running(), "a released group is left alone")
	require.Equal(t, exitStatus{}, gp.status, "the guardian exited 0")
	require.Empty(t, logged.String())
}

// TestGuardianSkipsAGroupGoneAlready: a group that exited is skipped,
// without a word on stderr.
func TestGuardianSkipsAGroupGoneAlready(t *testing.T) {
	gone := startSleeper(t)
	require.NoError(t, gone.cmd.Process.Kill())
	<-gone.done
	g, gp, logged := testGuardian(t)
	g.own(gone.cmd.Process.Pid)
	g.stop(20 * time.Second)
	require.Equal(t, exitStatus{}, gp.status, "the guardian exited 0")
	require.Empty(t, logged.String(), "nothing on the guardian's stderr")
}

// TestGuardianIgnoresSIGINT: a Ctrl-C (SIGINT to its group, as a terminal
// sends it, and to itself) does not end the guardian: it still reads the
// next line and kills that group at the end of its input.
func TestGuardianIgnoresSIGINT(t *testing.T) {
	sleeper := startSleeper(t)
	g, gp, _ := testGuardian(t)
	awaitReading(t, gp.pid) // the trap is set by then
	require.NoError(t, syscall.Kill(-gp.pid, syscall.SIGINT))
	require.NoError(t, syscall.Kill(gp.pid, syscall.SIGINT))
	g.own(sleeper.cmd.Process.Pid)
	g.stop(20 * time.Second)
	require.True(t, sleeper.killed(t), "the group owned after SIGINT was killed: %v", sleeper.err)
	require.Equal(t, exitStatus{}, gp.status, "the guardian exited 0, not by SIGINT")
}

// awaitReading waits until pid sleeps reading a pipe (its stdin, for the
// guardian): it ran the script's first lines.
func awaitReading(t *testing.T, pid int) {
	t.Helper()
	wchan := filepath.Join("/proc", strconv.Itoa(pid), "wchan")
	if _, err := os.Stat(wchan); err != nil {
		t.Skip("no /proc/PID/wchan here")
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if data, _ := os.ReadFile(wchan); strings.Contains(string(data), "pipe") {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d does not read its input", pid)
}

// TestGuardianScriptChurn: groups owned, released and owned again, as a
// long-lived pool's workers come and go, against a model of the same lines
// (the script rebuilds its list as released groups pile up).
func TestGuardianScriptChurn(t *testing.T) {
	var in strings.Builder
	model := map[int]bool{}
	x := uint32(1)
	for i := 0; i < 4000; i++ {
		x = x*1664525 + 1013904223
		pgid := 2 + int(x>>8)%300
		if (x>>4)%3 == 0 {
			in.WriteString("-" + strconv.Itoa(pgid) + "\n")
			delete(model, pgid)
		} else {
			in.WriteString("+" + strconv.Itoa(pgid) + "\n")
			model[pgid] = true
		}
		if i%1000 == 999 { // released in bulk: the list is rebuilt
			for pgid := range model {
				if pgid%5 != 0 {
					in.WriteString("-" + strconv.Itoa(pgid) + "\n")
					delete(model, pgid)
				}
			}
		}
	}
	var want []string
	for pgid := range model {
		want = append(want, strconv.Itoa(pgid))
	}
	sort.Strings(want)
	for name, shell := range guardianShells() {
		t.Run(name, func(t *testing.T) { require.Equal(t, want, guardianKills(t, shell, in.String())) })
	}
}

// TestGuardianWithoutShell: without its shell the guardian does not start,
// and the error names the shell and the cause.
func TestGuardianWithoutShell(t *testing.T) {
	g := &guardian{shell: "/nonexistent/sh", logger: slog.New(slog.NewTextHandler(io.Discard, nil)), groups: make(map[int]struct{})}
	err := g.start(func(*guardianProcess) {})
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "pypool: starting the pool's guardian: running /nonexistent/sh (a POSIX shell, which the guardian needs): ")
}

// TestGuardianScriptHasNoComments: the shell runs, and ps shows, the script
// without its comment lines.
func TestGuardianScriptHasNoComments(t *testing.T) {
	for _, line := range strings.Split(guardianScript, "\n") {
		require.False(t, strings.HasPrefix(strings.TrimSpace(line), "#"), "comment line %q", line)
	}
	require.Contains(t, guardianScript, "trap '' INT\n")
	require.Less(t, len(guardianScript), 2048)
}
