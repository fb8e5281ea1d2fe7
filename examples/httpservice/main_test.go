package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startService runs the service on a free port until the returned stop
// function is called, and returns its base URL. stop shuts it down and
// returns run's error.
func startService(t *testing.T, cfg config) (base string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, func(addr string) { addrs <- addr }) }()
	select {
	case addr := <-addrs:
		base = "http://" + addr
	case err := <-done:
		cancel()
		t.Fatalf("the service did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("the service did not start in 30s")
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the service did not stop in 30s")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return base, stop
}

// get makes a GET request and returns the status, the body and the
// Retry-After header.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(body), resp.Header.Get("Retry-After")
}

// metricValue returns the value of the sample of /metrics' Prometheus text
// whose name and labels (as written, e.g. `{pool="service_module",state="in_use"}`)
// are series, and whether there is one.
func metricValue(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// waitInUse polls /metrics until inUse workers are checked out.
func waitInUse(t *testing.T, base string, inUse int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body, _ := get(t, base+"/metrics")
		n, ok := metricValue(body, `pypool_workers{pool="service_module",state="in_use"}`)
		if !ok {
			t.Fatalf("/metrics has no pypool_workers in_use sample: %s", body)
		}
		if int(n) == inUse {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %d workers in use: %s", inUse, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestService drives the service with real HTTP requests: a call, the
// readiness probe, the metrics, a per-request deadline (504), load shedding
// with NoWait when both workers are busy (503 with Retry-After), and a
// graceful shutdown that lets the request in flight finish.
func TestService(t *testing.T) {
	base, stop := startService(t, config{
		Addr:            "127.0.0.1:0",
		Size:            2,
		RequestTimeout:  1500 * time.Millisecond,
		ShutdownTimeout: 10 * time.Second,
		Logger:          quietLogger(),
	})

	if code, body, _ := get(t, base+"/duplicate?text=ab"); code != 200 || body != "abab\n" {
		t.Fatalf("/duplicate?text=ab: %d %q, want 200 \"abab\\n\"", code, body)
	}
	if code, body, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %q, want 200", code, body)
	}
	_, body, _ := get(t, base+"/metrics")
	size, _ := metricValue(body, `pypool_size{pool="service_module"}`)
	calls, _ := metricValue(body, `pypool_calls_total{function="duplicate",outcome="ok",pool="service_module"}`)
	if size != 2 || calls != 1 {
		t.Errorf("/metrics: pypool_size %v (want 2), pypool_calls_total of duplicate ok %v (want 1):\n%s", size, calls, body)
	}

	t.Run("deadline", func(t *testing.T) {
		start := time.Now()
		code, body, _ := get(t, base+"/duplicate?text=slow&delay_ms=10000")
		if code != http.StatusGatewayTimeout {
			t.Errorf("a call past the request's deadline: %d %q, want 504", code, body)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the 504 took %v; the deadline is 1.5s", took)
		}
	})

	t.Run("shedding", func(t *testing.T) {
		waitInUse(t, base, 0) // the interrupted worker of the 504 is back
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _, _ = get(t, base+"/duplicate?text=hold&delay_ms=1200")
			}()
		}
		waitInUse(t, base, 2)
		code, body, retry := get(t, base+"/duplicate?text=shed")
		if code != http.StatusServiceUnavailable || retry == "" {
			t.Errorf("with both workers busy: %d %q Retry-After %q, want 503 with Retry-After", code, body, retry)
		}
		wg.Wait()
		for i, c := range codes {
			if c != 200 {
				t.Errorf("slow request %d: %d, want 200", i, c)
			}
		}
		if code, _, _ := get(t, base+"/duplicate?text=ok"); code != 200 {
			t.Errorf("after the burst: %d, want 200", code)
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		inFlight := make(chan int, 1)
		go func() {
			code, _, _ := get(t, base+"/duplicate?text=last&delay_ms=500")
			inFlight <- code
		}()
		waitInUse(t, base, 1)
		if err := stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if code := <-inFlight; code != 200 {
			t.Errorf("the request in flight at shutdown: %d, want 200", code)
		}
		if _, err := http.Get(base + "/readyz"); err == nil {
			t.Error("the service still answers after shutdown")
		}
	})
}

// TestMain lets TestSIGTERM run this test binary as the service itself,
// without building it: with PYPOOL_EXAMPLE_SERVICE set, it is main.
func TestMain(m *testing.M) {
	if args := os.Getenv("PYPOOL_EXAMPLE_SERVICE"); args != "" {
		os.Args = append([]string{"httpservice"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSIGTERM runs the service as a process (main, flags and signal
// handling included), makes a request and sends it SIGTERM: it must exit 0
// after a graceful shutdown.
func TestSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PYPOOL_EXAMPLE_SERVICE=-addr 127.0.0.1:0 -size 1")
	svc := startProcess(t, cmd)
	if code, body, _ := get(t, svc.base+"/duplicate?text=ab"); code != 200 || body != "abab\n" {
		t.Fatalf("/duplicate?text=ab: %d %q", code, body)
	}
	svc.terminate(t)
}

// TestStoppedWhileStarting: a SIGTERM while the workers start (run's ctx
// ended) is a stop, not a failure: run returns nil without serving.
func TestStoppedWhileStarting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := run(ctx, config{Addr: "127.0.0.1:0", Size: 1, RequestTimeout: time.Second, ShutdownTimeout: time.Second},
		func(string) { t.Error("the service served after its stop") })
	if err != nil {
		t.Fatalf("run stopped while starting: %v, want nil", err)
	}
}

// TestDeployedBinary builds the service as it is deployed (go build
// -trimpath), copies the binary alone to an empty directory and runs it
// from there: its Python module travels inside it (Config.PythonFS). It
// answers a call, serves /metrics in the Prometheus text format, and on
// SIGTERM exits 0 leaving no process behind (issue 20).
func TestDeployedBinary(t *testing.T) {
	build := t.TempDir()
	out, err := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(build, "httpservice"), ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -trimpath: %v\n%s", err, out)
	}
	deploy := t.TempDir() // empty: no source, no .py file
	bin, err := os.ReadFile(filepath.Join(build, "httpservice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deploy, "httpservice"), bin, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("./httpservice", "-addr", "127.0.0.1:0", "-size", "2")
	cmd.Dir = deploy
	svc := startProcess(t, cmd)
	if code, body, _ := get(t, svc.base+"/duplicate?text=ab"); code != 200 || body != "abab\n" {
		t.Fatalf("/duplicate?text=ab from the deployed binary: %d %q, want 200 \"abab\\n\"", code, body)
	}
	resp, err := http.Get(svc.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want the Prometheus text format (text/plain)", ct)
	}
	if n, ok := metricValue(string(text), `pypool_workers{pool="service_module",state="idle"}`); !ok || n != 2 {
		t.Errorf("/metrics: pypool_workers idle %v (found %v), want 2:\n%s", n, ok, text)
	}
	if n, _ := metricValue(string(text), `pypool_calls_total{function="duplicate",outcome="ok",pool="service_module"}`); n != 1 {
		t.Errorf("/metrics: pypool_calls_total of duplicate %v, want 1:\n%s", n, text)
	}

	children := childPids(svc.cmd.Process.Pid) // its workers and its guardian
	if len(children) < 2 {
		t.Errorf("the service runs %d child processes, want its 2 workers and its guardian", len(children))
	}
	svc.terminate(t)
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range children {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d of the service still runs after its exit", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// serviceProcess is the service running as a process.
type serviceProcess struct {
	cmd    *exec.Cmd
	base   string
	lines  chan string // its stdout
	exited chan error  // cmd.Wait's error
}

// startProcess starts cmd, the service, and waits until it says where it
// listens. It is killed when the test ends.
func startProcess(t *testing.T, cmd *exec.Cmd) *serviceProcess {
	t.Helper()
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	svc := &serviceProcess{cmd: cmd, lines: make(chan string, 4), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			svc.lines <- sc.Text()
		}
		close(svc.lines)
		svc.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case line := <-svc.lines:
		svc.base = "http://" + strings.TrimPrefix(line, "listening on ")
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not say where it listens in 30s")
	}
	return svc
}

// terminate sends the service SIGTERM: it must print "stopped" and exit 0.
func (svc *serviceProcess) terminate(t *testing.T) {
	t.Helper()
	if err := svc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-svc.lines:
		if line != "stopped" {
			t.Errorf("after SIGTERM it printed %q, want \"stopped\"", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20s after SIGTERM")
	}
	if err := <-svc.exited; err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}

// childPids returns the pids of pid's children (from /proc: Linux).
func childPids(pid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			pids = append(pids, p)
		}
	}
	return pids
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
