package osproc

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenPipesClosesWhatItOpenedOnFailure: a pipe that fails half-way
// leaves none of the pipes opened before it open, and its error is Pipe's.
func TestOpenPipesClosesWhatItOpenedOnFailure(t *testing.T) {
	var opened []*os.File
	failure := errors.New("out of descriptors")
	orig := Pipe
	t.Cleanup(func() { Pipe = orig })
	Pipe = func() (*os.File, *os.File, error) {
		if len(opened) == 4 {
			return nil, nil, failure
		}
		r, w, err := orig()
		opened = append(opened, r, w)
		return r, w, err
	}
	_, err := OpenPipes()
	require.ErrorIs(t, err, failure)
	for _, f := range opened {
		assert.ErrorIs(t, f.Close(), os.ErrClosed, "closed by OpenPipes")
	}
}

// TestStatFields reads this process's own state and parent, with a command
// name that may hold spaces or parentheses before them. The state is its
// main thread's: running (R), or sleeping (S) while the test runs on
// another thread.
func TestStatFields(t *testing.T) {
	fields, err := StatFields(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here (%v): StatFields is for Linux", err)
	}
	if len(fields) < 13 || (fields[0] != "R" && fields[0] != "S") || fields[1] != strconv.Itoa(os.Getppid()) {
		t.Fatalf("fields %q: want state R or S and parent %d", fields[:min(len(fields), 2)], os.Getppid())
	}
}
