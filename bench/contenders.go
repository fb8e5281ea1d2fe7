package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/pypool/pypool"
)

//go:embed floor.py
var floorScript string

//go:embed floor_readv.py
var floorReadvScript string

// The floors' Python loops, by contender name: floor.py is the floor every
// ratio is taken against, floor_readv.py the bench's floor until issue 21,
// kept as a variant (README.md says what each does).
const floorName, floorReadvName = "floor", "floor readv"

//go:embed httpserver.py
var httpScript string

// contender is one way of calling Python from Go.
type contender interface {
	// call runs bench_module.fn(arg) and returns the result's size.
	call(ctx context.Context, fn string, arg []byte) (int, error)
	close()
}

// measured is a contender whose Python processes' CPU time the bench reads.
type measured interface {
	contender
	pythonPids(ctx context.Context) []int
}

// floor is a Go program and a minimal Python loop echoing 4-byte-length-
// prefixed frames over pipes: no codec, no pool. The Go side is as plain
// as the Python one: one write of the length and the payload, a buffered
// reader, io.ReadFull of the length and of the payload into one reused
// buffer. Several callers share it under a mutex.
type floor struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	hdr  [4]byte
	send []byte
	buf  []byte
	// fresh: each result is read into a new slice, as pypool's Call
	// returns one (the floor-fresh variant of -profile), instead of the
	// one buffer reused.
	fresh bool
}

// startScript runs an embedded Python program with pipes to its stdin and
// stdout; its stderr goes to ours.
func startScript(python, script string, args ...string) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	cmd := exec.Command(python, append([]string{"-E", "-c", script}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return cmd, in, out, nil
}

// startFloor starts the floor's Python loop (floor.py) on pipes of
// pipeSize bytes, or of Linux's default size (64 KiB) when pipeSize is 0.
func startFloor(python string, pipeSize int) (*floor, error) {
	return startFloorScript(python, floorScript, pipeSize)
}

// startFloorReadv starts the variant floor_readv.py as startFloor does.
func startFloorReadv(python string, pipeSize int) (*floor, error) {
	return startFloorScript(python, floorReadvScript, pipeSize)
}

// startFloorScript starts one of the floors' Python loops.
func startFloorScript(python, script string, pipeSize int) (*floor, error) {
	var args []string
	if pipeSize > 0 {
		args = append(args, strconv.Itoa(pipeSize))
	}
	cmd, in, out, err := startScript(python, script, args...)
	if err != nil {
		return nil, err
	}
	return &floor{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 64<<10)}, nil
}

func (f *floor) call(_ context.Context, _ string, arg []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.send = binary.BigEndian.AppendUint32(f.send[:0], uint32(len(arg)))
	f.send = append(f.send, arg...)
	if _, err := f.in.Write(f.send); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(f.out, f.hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(f.hdr[:]))
	if f.fresh {
		f.buf = nil
	}
	if cap(f.buf) < n {
		f.buf = make([]byte, n)
	}
	_, err := io.ReadFull(f.out, f.buf[:n])
	return n, err
}

func (f *floor) pythonPids(context.Context) []int { return []int{f.cmd.Process.Pid} }

func (f *floor) close() {
	f.in.Close()
	_ = f.cmd.Wait()
}

// pool is pypool as a user calls it.
type pool struct {
	p    *pypool.Pool
	size int
}

// startPool starts pypool with the default message limit, 64 MiB.
func startPool(ctx context.Context, python, dir string, workers, overflow int) (*pool, error) {
	return startPoolLimit(ctx, python, dir, workers, overflow, pypool.DefaultMaxMessageSize)
}

// startPoolLimit starts pypool with Config.MaxMessageSize set to maxMessage.
func startPoolLimit(ctx context.Context, python, dir string, workers, overflow, maxMessage int) (*pool, error) {
	p, err := pypool.New(ctx, pypool.Config{
		Module: "bench_module", PythonPath: []string{dir}, Python: python,
		Size: workers, MaxOverflow: overflow, MaxMessageSize: maxMessage,
	})
	return &pool{p, workers}, err
}

// startPoolPipes starts one pypool worker with the shared memory off
// (a negative SharedMemoryThreshold): every payload takes the pipes, as
// the floor's do.
func startPoolPipes(ctx context.Context, python, dir string) (*pool, error) {
	p, err := pypool.New(ctx, pypool.Config{
		Module: "bench_module", PythonPath: []string{dir}, Python: python,
		Size: 1, SharedMemoryThreshold: -1,
	})
	return &pool{p, 1}, err
}

func (p *pool) call(ctx context.Context, fn string, arg []byte) (int, error) {
	var in any = arg
	if fn == "duplicate_text" {
		in = string(arg)
	}
	out, err := p.p.Call(ctx, fn, in)
	switch v := out.(type) {
	case string:
		return len(v), err
	case []byte:
		return len(v), err
	}
	return 0, err
}

// pythonPids checks out all the pool's workers at once, in nested
// transactions, and returns their pids.
func (p *pool) pythonPids(ctx context.Context) []int {
	var pids []int
	var checkout func() error
	checkout = func() error {
		if len(pids) == p.size {
			return nil
		}
		return p.p.Transaction(ctx, func(w *pypool.Worker) error {
			pids = append(pids, w.Pid())
			return checkout()
		})
	}
	must(0, checkout())
	return pids
}

func (p *pool) close() { _ = p.p.Close(context.Background()) }

// pooledBuffer is pypool called with CallBytes into one reused buffer, as
// a program that handles large bytes results in a loop does (and as the
// floor does): the results cost Go's allocator and collector nothing.
type pooledBuffer struct {
	*pool
	buf []byte
}

func startPooledBuffer(ctx context.Context, python, dir string, maxMessage int) (*pooledBuffer, error) {
	p, err := startPoolLimit(ctx, python, dir, 1, 0, maxMessage)
	return &pooledBuffer{pool: p}, err
}

// startPooledBufferPipes is startPooledBuffer with the shared memory off:
// CallBytes into one reused buffer through the pipes, the floor's own
// conditions (a reused buffer, the same pipes).
func startPooledBufferPipes(ctx context.Context, python, dir string) (*pooledBuffer, error) {
	p, err := startPoolPipes(ctx, python, dir)
	return &pooledBuffer{pool: p}, err
}

func (p *pooledBuffer) call(ctx context.Context, fn string, arg []byte) (int, error) {
	var err error
	p.buf, err = pypool.CallBytes(ctx, p.p, p.buf[:0], fn, arg)
	return len(p.buf), err
}

// execPerCall starts the interpreter for every call.
type execPerCall struct{ python, dir string }

func (e execPerCall) call(ctx context.Context, fn string, arg []byte) (int, error) {
	script := fmt.Sprintf("import sys;sys.path.insert(0,%q);import bench_module;sys.stdout.write(bench_module.%s(sys.argv[1]))", e.dir, fn)
	out, err := exec.CommandContext(ctx, e.python, "-E", "-c", script, string(arg)).Output()
	return len(out), err
}

func (execPerCall) close() {}

// httpService is a Python standard-library HTTP server called through Go's
// keep-alive client with JSON bodies.
type httpService struct {
	cmd    *exec.Cmd
	url    string
	client *http.Client
}

func startHTTP(python, dir string, conns int) (*httpService, error) {
	cmd, _, out, err := startScript(python, httpScript, dir)
	if err != nil {
		return nil, err
	}
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("http server did not start: %w", err)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	return &httpService{
		cmd:    cmd,
		url:    "http://127.0.0.1:" + strings.TrimSpace(port) + "/",
		client: &http.Client{Transport: transport},
	}, nil
}

func (h *httpService) call(ctx context.Context, fn string, arg []byte) (int, error) {
	body, _ := json.Marshal(map[string]any{"fn": fn, "args": []string{string(arg)}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var reply struct{ Result string }
	err = json.NewDecoder(resp.Body).Decode(&reply)
	return len(reply.Result), err
}

func (h *httpService) pythonPids(context.Context) []int { return []int{h.cmd.Process.Pid} }

func (h *httpService) close() {
	h.client.CloseIdleConnections()
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}
