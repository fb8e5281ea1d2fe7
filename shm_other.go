//go:build !(linux && (amd64 || arm64))

package pypool

import (
	"errors"
	"os"
)

// Shared memory needs memfd_create, which only Linux has: elsewhere large
// payloads always travel through the pipes.

var errNoSharedMemory = errors.New("shared memory needs Linux on amd64 or arm64")

func createSharedFile() (*os.File, error)     { return nil, errNoSharedMemory }
func mapShared(*os.File, int) ([]byte, error) { return nil, errNoSharedMemory }
func unmapShared([]byte) error                { return nil }
func sharedFileSize(*os.File) (int64, error)  { return 0, errNoSharedMemory }
func growSharedFile(*os.File, int64) error    { return errNoSharedMemory }
