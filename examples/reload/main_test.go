package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the logger's and the test's
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestReloadOnSignal serves the module from a copy, edits it, reloads it
// (as SIGHUP does), and checks that the next request is answered by the
// new code; then a broken edit is reported and the old code serves on.
func TestReloadOnSignal(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("reload_module.py")
	if err != nil {
		t.Fatal(err)
	}
	module := filepath.Join(dir, "reload_module.py")
	write := func(text string) {
		if err := os.WriteFile(module, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(string(src))
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	reloads := make(chan os.Signal)
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, dir, reloads, logger) }()

	greet := func() string {
		for {
			resp, err := http.Get("http://" + ln.Addr().String() + "/greet?name=ada")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return strings.TrimSpace(string(body))
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	awaitLog := func(what string) {
		for !strings.Contains(logs.String(), what) {
			if ctx.Err() != nil {
				t.Fatalf("no %q in the log:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := greet(); got != "Hello, ada!" {
		t.Fatalf("greet: %q", got)
	}
	write(strings.Replace(string(src), `"Hello"`, `"Bonjour"`, 1))
	reloads <- os.Signal(nil)
	awaitLog("msg=reloaded generation=1")
	if got := greet(); got != "Bonjour, ada!" {
		t.Errorf("after the reload: %q", got)
	}
	write("raise RuntimeError('a broken edit')\n")
	reloads <- os.Signal(nil)
	awaitLog("a broken edit")
	if got := greet(); got != "Bonjour, ada!" {
		t.Errorf("after the broken reload: %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Nothing takes a reload once run returned: its pool is closed.
	select {
	case reloads <- os.Signal(nil):
		t.Error("a reload was taken after run returned")
	default:
	}
}
