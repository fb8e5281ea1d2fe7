package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
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

// waitInUse polls /metrics until inUse workers are checked out.
func waitInUse(t *testing.T, base string, inUse int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body, _ := get(t, base+"/metrics")
		var m struct {
			Status string
			InUse  int
		}
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("/metrics is not JSON: %v: %s", err, body)
		}
		if m.InUse == inUse {
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
// with TryCall when both workers are busy (503 with Retry-After), and a
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
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("/metrics is not JSON: %v: %s", err, body)
	}
	if m["Status"] != "ready" || m["Size"] != 2.0 || m["CallsSent"] == 0.0 {
		t.Errorf("/metrics: %s", body)
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
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })

	var addr string
	select {
	case line := <-lines:
		addr = strings.TrimPrefix(line, "listening on ")
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not say where it listens in 30s")
	}
	if code, body, _ := get(t, "http://"+addr+"/duplicate?text=ab"); code != 200 || body != "abab\n" {
		t.Fatalf("/duplicate?text=ab: %d %q", code, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-lines:
		if line != "stopped" {
			t.Errorf("after SIGTERM it printed %q, want \"stopped\"", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20s after SIGTERM")
	}
	if err := <-exited; err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}
