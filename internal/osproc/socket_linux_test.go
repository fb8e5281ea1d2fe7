package osproc

import (
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSendFilesReceivedFile: one descriptor sent over a unix socket
// (SCM_RIGHTS) is received as a file of the same pipe; two are refused
// (and closed).
func TestSendFilesReceivedFile(t *testing.T) {
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socket")
		c, err := net.FileConn(f)
		f.Close()
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	a, b := conn(pair[0]), conn(pair[1])
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()

	require.NoError(t, SendFiles(a, []byte("F"), []*os.File{w}))
	buf, oob := make([]byte, 16), make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := b.ReadMsgUnix(buf, oob)
	require.NoError(t, err)
	assert.Equal(t, "F", string(buf[:n]))
	got := ReceivedFile(oob[:oobn])
	require.NotNil(t, got)
	_, err = got.Write([]byte("x"))
	require.NoError(t, err)
	got.Close()
	one := make([]byte, 1)
	_, err = r.Read(one)
	require.NoError(t, err)
	assert.Equal(t, "x", string(one), "the received file is the pipe's write end")

	require.NoError(t, SendFiles(a, []byte("F"), []*os.File{r, w}))
	_, oobn, _, _, err = b.ReadMsgUnix(buf, oob)
	require.NoError(t, err)
	assert.Nil(t, ReceivedFile(oob[:oobn]), "two descriptors are not one")
}
