package osproc

import (
	"errors"
	"os"
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
