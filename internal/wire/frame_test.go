package wire

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func frameHeader(body []byte) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(len(body)))
}

func TestFrameReaderResumesAfterTimeout(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	fr := NewFrameReader(r, 1<<20)
	body := []byte("hello, frames")
	msg := append(frameHeader(body), body...)

	_, err = w.Write(msg[:2]) // half a header
	require.NoError(t, err)
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, err = fr.Next()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	_, err = w.Write(msg[2:9]) // the rest of the header and part of the body
	require.NoError(t, err)
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, err = fr.Next()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	_, err = w.Write(msg[9:])
	require.NoError(t, err)
	r.SetReadDeadline(time.Time{})
	got, _, err := fr.Next()
	require.NoError(t, err)
	assert.Equal(t, body, got)
}

func TestLargeFramesAreHandedOver(t *testing.T) {
	payload := bytes.Repeat([]byte{7}, LargeFrame+1)
	body, err := msgpack.Marshal(payload)
	require.NoError(t, err)
	fr := NewFrameReader(bytes.NewReader(append(frameHeader(body), body...)), 4*LargeFrame)
	got, owned, err := fr.Next()
	require.NoError(t, err)
	assert.True(t, owned, "the reader keeps no large buffer")
	assert.Equal(t, body, got)
	assert.Nil(t, fr.body)
}

func TestFrameReaderChecksLengthBeforeAllocating(t *testing.T) {
	fr := NewFrameReader(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), 1<<20)
	_, _, err := fr.Next()
	var tooLarge *SizeError
	require.ErrorAs(t, err, &tooLarge)
	assert.Equal(t, SizeError{Size: 0xffffffff, Limit: 1 << 20}, *tooLarge)
	assert.Nil(t, fr.body, "nothing was allocated for the declared length")
}

func TestFrameReaderTruncatedFrame(t *testing.T) {
	body := []byte("abc")
	fr := NewFrameReader(bytes.NewReader(append(frameHeader([]byte("abcdef")), body...)), 1<<20)
	_, _, err := fr.Next()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

	fr = NewFrameReader(bytes.NewReader(nil), 1<<20)
	_, _, err = fr.Next()
	assert.ErrorIs(t, err, io.EOF)
}
