//go:build !(linux && (amd64 || arm64))

package shm

import (
	"errors"
	"os"
)

// Shared memory needs memfd_create, which only Linux has: elsewhere large
// payloads always travel through the pipes.

var errNoSharedMemory = errors.New("shared memory needs Linux on amd64 or arm64")

func createFile() (*os.File, error)         { return nil, errNoSharedMemory }
func mapFile(*os.File, int) ([]byte, error) { return nil, errNoSharedMemory }
func unmap([]byte) error                    { return nil }
func fileSize(*os.File) (int64, error)      { return 0, errNoSharedMemory }
func growFile(*os.File, int64) error        { return errNoSharedMemory }
