// Package osproc is the operating system's side of a worker process, and
// knows nothing of the pool: starting a command on a locked OS thread (so
// that its parent-death signal holds), the pipes it is given, its process
// attributes and process group, waiting for its exit without reaping it,
// how many bytes wait in its output pipes and their read system call, and,
// for the fork server, the descriptors passed over its control socket
// (SCM_RIGHTS), pidfds, and the processes that hold a lost request's
// descriptors.
package osproc

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// StartOnLockedThread starts cmd from a goroutine locked to its OS thread.
// Linux sends the parent-death signal when the thread that forked the child
// exits, not the process (golang/go#27505); the Go runtime only ends a
// thread when a goroutine exits while locked to it, which this function
// never does.
func StartOnLockedThread(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}

// Pipe is os.Pipe, for OpenPipes. Tests replace it (while no process
// starts) to make starts fail as they do on a host out of descriptors.
var Pipe = os.Pipe

// OpenPipes opens the four pipes a worker needs, each as its read end then
// its write end; on failure all are closed and Pipe's error is returned.
func OpenPipes() (files [8]*os.File, err error) {
	for i := 0; i < 8; i += 2 {
		if files[i], files[i+1], err = Pipe(); err != nil {
			CloseFiles(files[:i]...)
			return files, err
		}
	}
	return files, nil
}

// CloseFiles closes every file of files that is not nil.
func CloseFiles(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// StatFields returns the fields of /proc/<pid>/stat after the command name
// (which may hold spaces and parentheses): fields[0] is the state (field 3
// in proc(5)), fields[1] the parent's pid, fields[11] and [12] utime and
// stime. Where there is no /proc (not Linux), it returns the read's error.
func StatFields(pid int) ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:]), nil
}
