package main

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestCallbacks runs the example and checks its output line by line.
func TestCallbacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := "Hello, Ada (admin)\nHello, Grace (operator)\nHello, stranger (no user 3)\n[3 2 1 liftoff]\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
