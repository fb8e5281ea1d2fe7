package pypool

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSharedMemoryEchoQuick(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
			out, err := pool.Call(testCtx(t), "echo", data)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, out.([]byte)))
		})
	}
}
