package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestStreaming runs the example and checks what it prints: the words in
// order, the squares up to the break, and a full stream afterwards.
func TestStreaming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("output:\n%s", text)
	var words []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "(after") {
			words = append(words, strings.Fields(line)[0])
		}
	}
	if got := strings.Join(words, " "); got != "streamed one word at a time" {
		t.Errorf("words %q", got)
	}
	for _, want := range []string{"0^2 = 0\n", "7^2 = 49\n", "streamed 100000 records\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in the output", want)
		}
	}
	if strings.Contains(text, "8^2") {
		t.Error("the loop did not stop at the break")
	}
}
