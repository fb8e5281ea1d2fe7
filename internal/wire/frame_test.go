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

// splitAt is a Split that takes the first key bytes as the head.
func splitAt(_ []byte, _ int, key uint64) int { return int(key) }

// TestNextSplitReadsTheRestStraightIntoTheBuffer (issue 21): a large body
// split reads what follows its head into the spare capacity of the buffer
// given, not into the reader's own; a small one, or one Split declines,
// is read as Next reads it.
func TestNextSplitReadsTheRestStraightIntoTheBuffer(t *testing.T) {
	large := bytes.Repeat([]byte("0123456789abcdef"), MinSplit/16+1)
	small := []byte("a small frame")
	var stream []byte
	for _, b := range [][]byte{large, small, large, large} {
		stream = append(append(stream, frameHeader(b)...), b...)
	}
	fr := NewFrameReader(bytes.NewReader(stream), 1<<20)
	buf := make([]byte, 3, 2*len(large))
	copy(buf, "abc")
	head, owned, out, err := fr.NextSplit(splitAt, 5, buf)
	require.NoError(t, err)
	assert.False(t, owned)
	assert.Equal(t, large[:5], head)
	assert.Equal(t, append([]byte("abc"), large[5:]...), out, "appended to buf")
	assert.Same(t, &buf[0], &out[0], "in buf's spare capacity")
	assert.Nil(t, fr.body, "the reader allocated nothing for the body")

	body, _, out, err := fr.NextSplit(func([]byte, int, uint64) int { panic("asked for a small frame") }, 0, buf)
	require.NoError(t, err)
	assert.Nil(t, out)
	assert.Equal(t, small, body)

	body, _, out, err = fr.NextSplit(func([]byte, int, uint64) int { return -1 }, 0, buf)
	require.NoError(t, err)
	assert.Nil(t, out, "declined")
	assert.Equal(t, large, body)

	head, _, out, err = fr.NextSplit(splitAt, HeadSize, nil)
	require.NoError(t, err)
	assert.Equal(t, large[:HeadSize], head)
	assert.Equal(t, large[HeadSize:], out, "a buffer grown as append grows it")
}

// TestNextSplitCutOffResumesUnsplit (issue 21): a read cut off by a
// deadline in the head or in the rest of a split frame leaves the buffer
// alone from then on (what it read moves into the reader's own), and the
// next read returns the whole body, as if never split.
func TestNextSplitCutOffResumesUnsplit(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), MinSplit/16+1)
	msg := append(frameHeader(body), body...)
	for _, cut := range []int{HeaderSize + 3, HeaderSize + HeadSize + 1000} {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		fr := NewFrameReader(r, 1<<20)
		buf := make([]byte, 0, len(body))
		go w.Write(msg[:cut])
		r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _, out, err := fr.NextSplit(splitAt, 7, buf)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "cut at %d", cut)
		assert.Nil(t, out)
		spare := buf[:cap(buf)]
		for i := range spare {
			spare[i] = 'x' // the caller's again: the reader must not read it back
		}
		go w.Write(msg[cut:])
		r.SetReadDeadline(time.Time{})
		got, _, out, err := fr.NextSplit(splitAt, 7, buf)
		require.NoError(t, err, "cut at %d", cut)
		assert.Nil(t, out, "a resumed frame is not split again")
		assert.True(t, bytes.Equal(body, got), "cut at %d: the whole body", cut)
		assert.Equal(t, bytes.Repeat([]byte{'x'}, len(spare)), spare, "cut at %d: the buffer was not written after the cut", cut)
		r.Close()
		w.Close()
	}
}

func TestNextSplitTruncated(t *testing.T) {
	body := bytes.Repeat([]byte{1}, MinSplit)
	for _, n := range []int{HeaderSize + 3, HeaderSize + HeadSize + 10} {
		fr := NewFrameReader(bytes.NewReader(append(frameHeader(body), body...)[:n]), 1<<20)
		_, _, _, err := fr.NextSplit(splitAt, 2, nil)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "%d bytes", n)
	}
}

// TestBufferedBodyIsNotCopied (issue 21): a body that the read of its
// header brought in whole is returned from the read buffer, with no copy
// into the reader's own body buffer (which stays unmade: before, every
// frame was copied into it); it is capped, so that an append to it cannot
// write over the next frame.
func TestBufferedBodyIsNotCopied(t *testing.T) {
	first, second := bytes.Repeat([]byte{1}, 1<<10), []byte("the next frame")
	var stream []byte
	for _, b := range [][]byte{first, second} {
		stream = append(append(stream, frameHeader(b)...), b...)
	}
	fr := NewFrameReader(bytes.NewReader(stream), 1<<20)
	got, owned, err := fr.Next()
	require.NoError(t, err)
	assert.False(t, owned)
	assert.Equal(t, first, got)
	assert.True(t, fr.body == nil, "the body was copied into the reader's body buffer")
	assert.Equal(t, len(got), cap(got))
	_ = append(got, "overwrite"...)
	got, _, err = fr.Next()
	require.NoError(t, err)
	assert.Equal(t, second, got)
	assert.True(t, fr.body == nil, "the body was copied into the reader's body buffer")
}
