package osproc

// socket_linux.go is the fork server's plumbing: descriptors passed over its
// control socket (SCM_RIGHTS), the pidfds of the workers it forks, and the
// processes that hold the descriptors of a fork request that was lost.

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// SendFiles writes msg on conn with files' descriptors (SCM_RIGHTS).
func SendFiles(conn *net.UnixConn, msg []byte, files []*os.File) error {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	_, _, err := conn.WriteMsgUnix(msg, syscall.UnixRights(fds...), nil)
	runtime.KeepAlive(files)
	return err
}

// ReceivedFile is the one descriptor passed in oob (SCM_RIGHTS),
// non-blocking so that the runtime's poller can wait on it; nil when oob
// holds none or more than one (those are closed).
func ReceivedFile(oob []byte) *os.File {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := syscall.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil
	}
	syscall.CloseOnExec(fds[0])
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		return nil
	}
	return os.NewFile(uintptr(fds[0]), "pidfd")
}

// KillHolders SIGKILLs every process other than this one that has one of
// files open (found in /proc/*/fd), with its process group when it leads
// one, and waits up to wait for them to exit. It returns how many it
// killed. A process is signalled through a pidfd opened after it was seen
// to hold a file and checked again once opened, so that a pid reused
// meanwhile is never hit.
func KillHolders(files []*os.File, wait time.Duration) (int, error) {
	want := make(map[openFile]bool, len(files))
	for _, f := range files {
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err == nil {
			want[openFile{st.Dev, st.Ino}] = true
		}
	}
	runtime.KeepAlive(files)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("finding the processes that hold a worker's descriptors: %w", err)
	}
	var pidfds []pollFd
	defer func() {
		for _, p := range pidfds {
			syscall.Close(int(p.fd))
		}
	}()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !holds(pid, want) || RunsThisProgram(pid) {
			continue
		}
		r, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
		if errno != 0 {
			continue // it exited
		}
		if !holds(pid, want) {
			syscall.Close(int(r))
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_, _, _ = syscall.Syscall6(sysPidfdSendSignal, r, uintptr(syscall.SIGKILL), 0, 0, 0, 0)
		pidfds = append(pidfds, pollFd{fd: int32(r), events: 0x1}) // POLLIN: it exited
	}
	awaitAll(pidfds, wait)
	return len(pidfds), nil
}

// RunsThisProgram reports whether pid runs this process's executable: a
// child of this process between its fork and its exec, which holds a copy
// of every descriptor (this process's are close-on-exec: the exec closes
// them).
func RunsThisProgram(pid int) bool {
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		return false
	}
	exe, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && os.SameFile(self, exe)
}

// openFile names an open file: its device and inode.
type openFile struct{ dev, ino uint64 }

// holds reports whether pid has one of the files in want open.
func holds(pid int, want map[openFile]bool) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false // gone, or not ours to look at
	}
	for _, e := range entries {
		var st syscall.Stat_t
		if syscall.Stat(dir+e.Name(), &st) == nil && want[openFile{st.Dev, st.Ino}] {
			return true
		}
	}
	return false
}

// awaitAll waits up to wait until every pidfd in polls is readable (its
// process exited).
func awaitAll(polls []pollFd, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for len(polls) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(left.Nanoseconds())
		n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&polls[0])), uintptr(len(polls)), uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if errno != 0 && errno != syscall.EINTR {
			return
		}
		if n == 0 && errno == 0 {
			return // timed out
		}
		pending := polls[:0]
		for _, p := range polls {
			if p.revents == 0 {
				pending = append(pending, p)
			}
		}
		polls = pending
	}
}

// sysPidfdOpen is pidfd_open(2)'s number, the same on every Linux
// architecture.
const sysPidfdOpen = 434

// sysPidfdSendSignal is pidfd_send_signal(2)'s number, the same on every
// Linux architecture (it came after the numbering was unified).
const sysPidfdSendSignal = 424

// SignalPidfd sends sig to the process of pidfd: unlike its pid, a pidfd
// never names another process once this one was reaped. A no-op once pidfd
// is closed.
func SignalPidfd(pidfd *os.File, sig syscall.Signal) {
	conn, err := pidfd.SyscallConn()
	if err != nil {
		return // closed: it exited
	}
	_ = conn.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall6(sysPidfdSendSignal, fd, uintptr(sig), 0, 0, 0, 0)
	})
}

// AwaitPidfd waits until pidfd is readable, which it becomes when its
// process exits; false if the runtime's poller cannot wait on it. Each
// round checks the pidfd itself (ppoll): the poller reports edges, and one
// that came before the wait began is forgotten when it begins.
func AwaitPidfd(pidfd *os.File) bool {
	conn, err := pidfd.SyscallConn()
	if err != nil {
		return false
	}
	return conn.Read(exited) == nil
}

// exited reports whether the pidfd is readable now (the process exited),
// without waiting.
func exited(pidfd uintptr) bool {
	poll := pollFd{fd: int32(pidfd), events: 0x1} // POLLIN
	var zero syscall.Timespec
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&poll)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return errno == 0 && n == 1
}
