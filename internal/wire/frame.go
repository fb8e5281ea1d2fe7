package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// HeaderSize is the size of the length prefix of every frame: the length
// of the body that follows, 4 bytes big-endian.
const HeaderSize = 4

// LargeFrame is the size above which a FrameReader does not keep its
// buffer for reuse: a large frame's body is handed over to the caller
// instead of copied.
const LargeFrame = 1 << 20

// MinSplit is the least body size that NextSplit offers to split: a
// smaller body goes through the reader's buffer, whose copy costs less
// than the read.
const MinSplit = 64 << 10

// HeadSize is how many bytes of a body NextSplit gives its Split to find
// the frame's head in.
const HeadSize = 32

// Split says whether the body of a large frame is split, and where. Given
// the first HeadSize bytes of the body, the body's size and the key given
// to NextSplit, it returns how many of them are the frame's head (less
// than size), or -1 for the body to be read whole, as Next reads it. It
// is a function of its arguments only (a plain function, not a closure),
// so that what the caller splits into is not seen by an indirect call.
type Split func(head []byte, size int, key uint64) (headLen int)

// PutHeader writes into the first HeaderSize bytes of frame the length of
// the rest of it, its body.
func PutHeader(frame []byte) {
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-HeaderSize))
}

// SizeError is the error of a frame whose length prefix declares more
// than the reader's limit. Nothing was allocated for it.
type SizeError struct {
	Size  uint32 // the declared length
	Limit int    // the reader's limit
}

// Error says how large the frame was and what the limit is.
func (e *SizeError) Error() string {
	return fmt.Sprintf("a %d-byte frame, the limit is %d", e.Size, e.Limit)
}

// FrameReader reads frames from a worker. A read cut off by a deadline can
// be resumed: the reader remembers how much of the current frame it has,
// so the stream never loses its framing. It is not safe for concurrent
// use.
type FrameReader struct {
	r       *bufio.Reader
	maxSize int
	header  [HeaderSize]byte
	head    [HeadSize]byte // a split frame's head (NextSplit)
	headerN int            // bytes of header read so far
	body    []byte         // reused between frames
	bodyLen int            // -1 while the header is incomplete
	bodyN   int            // bytes of body read so far

	minSplit int // MinSplit; smaller in tests
}

// NewFrameReader returns a reader of frames from r whose bodies are at most
// maxSize bytes.
func NewFrameReader(r io.Reader, maxSize int) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), maxSize: maxSize, bodyLen: -1, minSplit: MinSplit}
}

// SetMaxSize changes the largest body the reader accepts from the next
// frame on.
func (f *FrameReader) SetMaxSize(maxSize int) { f.maxSize = maxSize }

// Buffered returns how many bytes the reader has read from its source but
// not yet put into a frame.
func (f *FrameReader) Buffered() int { return f.r.Buffered() }

// Next returns the body of the next frame. The slice is valid until the
// next call, unless owned is true (a body above LargeFrame): then the
// reader dropped it and the caller may keep it. A body that the read of
// its header brought in whole is not copied: it is a slice of the read
// buffer. A body larger than the
// limit is a *SizeError. An error other than a timeout leaves the reader
// unusable.
func (f *FrameReader) Next() (body []byte, owned bool, err error) {
	body, owned, _, err = f.NextSplit(nil, 0, nil)
	return body, owned, err
}

// NextSplit is Next, with split (nil: none) asked whether the body of a
// frame of MinSplit bytes or more is split after its head. When it is, the
// rest of the body is read straight into buf's spare capacity (grown as
// append grows it), body is the frame's head only (valid until the next
// call), and out is buf extended by the rest of the body (nil when the
// frame was not split). A read cut off before the body is complete (a
// timeout, or any other error) first moves what it read into the reader's
// own buffer, so that buf is never written after NextSplit returns (its
// contents up to its length never are): the next call resumes the frame
// as if it had never been split, and returns its whole body.
func (f *FrameReader) NextSplit(split Split, key uint64, buf []byte) (body []byte, owned bool, out []byte, err error) {
	for f.headerN < HeaderSize {
		n, err := f.r.Read(f.header[f.headerN:])
		f.headerN += n
		if err != nil && f.headerN < HeaderSize {
			if err == io.EOF && f.headerN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, nil, err
		}
	}
	if f.bodyLen < 0 {
		size := binary.BigEndian.Uint32(f.header[:])
		if uint64(size) > uint64(f.maxSize) {
			return nil, false, nil, &SizeError{Size: size, Limit: f.maxSize}
		}
		f.bodyLen = int(size)
		if split != nil && f.bodyLen >= max(f.minSplit, HeadSize) {
			head, out, err := f.split(split, key, buf)
			if err != nil || out != nil {
				return head, false, out, err
			}
		} else if f.r.Buffered() >= f.bodyLen {
			// The whole body came with its header's read: it is returned
			// where it lies in the read buffer, not copied (valid as
			// long, until the next call), capped so that an append to it
			// cannot write over the bytes after it.
			body, _ = f.r.Peek(f.bodyLen)
			_, _ = f.r.Discard(f.bodyLen)
			f.headerN, f.bodyLen = 0, -1
			return body[:len(body):len(body)], false, nil, nil
		} else {
			f.ensureBody()
		}
	}
	for f.bodyN < f.bodyLen {
		n, err := f.r.Read(f.body[f.bodyN:])
		f.bodyN += n
		if err != nil && f.bodyN < f.bodyLen {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, nil, err
		}
	}
	body = f.body
	f.headerN, f.bodyLen, f.bodyN = 0, -1, 0
	if cap(f.body) > LargeFrame {
		f.body, owned = nil, true // do not pin a large buffer to an idle worker
	}
	return body, owned, nil, nil
}

// ensureBody makes f.body the current frame's length.
func (f *FrameReader) ensureBody() {
	if cap(f.body) < f.bodyLen {
		f.body = make([]byte, f.bodyLen)
	}
	f.body = f.body[:f.bodyLen]
}

// split reads the current frame's body, whose length is known and none of
// it read, as split says: the head, then the rest straight into buf's
// spare capacity. It returns the head and buf extended by the rest, or a
// nil out without an error when split declined: then the head is in
// f.body (f.bodyN), for Next's loop to read the rest. On an error, what
// was read is in f.body, as if Next had read it.
func (f *FrameReader) split(split Split, key uint64, buf []byte) (head, out []byte, err error) {
	n, err := io.ReadFull(f.r, f.head[:])
	if err != nil {
		f.unsplit(f.head[:n], nil)
		return nil, nil, eofInFrame(err)
	}
	headLen := split(f.head[:], f.bodyLen, key)
	if headLen < 0 {
		f.unsplit(f.head[:], nil)
		return nil, nil, nil
	}
	if headLen > HeadSize || headLen >= f.bodyLen {
		panic(fmt.Sprintf("wire: Split gave a head of %d bytes for a %d-byte body", headLen, f.bodyLen))
	}
	rest := f.bodyLen - headLen
	buf = slices.Grow(buf, rest)
	tail := buf[len(buf) : len(buf)+rest]
	k := copy(tail, f.head[headLen:])
	n, err = io.ReadFull(f.r, tail[k:])
	if err != nil {
		f.unsplit(f.head[:headLen], tail[:k+n])
		return nil, nil, eofInFrame(err)
	}
	f.headerN, f.bodyLen = 0, -1
	return f.head[:headLen], buf[:len(buf)+rest], nil
}

// unsplit puts the head and tail read so far of a frame being split into
// f.body, so that the frame goes on as one that never was.
func (f *FrameReader) unsplit(head, tail []byte) {
	f.ensureBody()
	f.bodyN = copy(f.body, head)
	f.bodyN += copy(f.body[f.bodyN:], tail)
}

// eofInFrame is err, or io.ErrUnexpectedEOF for an end of the stream
// inside a frame.
func eofInFrame(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
