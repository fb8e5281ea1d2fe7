package main

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestTyped runs the example and checks what it prints.
func TestTyped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	const want = `B-2: 3 nut
Z-9 found: false
C-3 restocked: 10
low: B-2 (3)
sku A-1
sku B-2
sku C-3
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}
