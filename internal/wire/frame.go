package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
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

// Split says where the body of a large frame goes. Given the first
// HeadSize bytes of the body and the body's size, it returns how many of
// them are the frame's head, and the slice, of exactly size-headLen bytes,
// that the rest of the body is read into; or a nil tail, for the body to
// be read as Next reads it.
type Split func(head []byte, size int) (headLen int, tail []byte)

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

// Buffered returns how many bytes the reader has read from its source but
// not yet put into a frame.
func (f *FrameReader) Buffered() int { return f.r.Buffered() }

// Next returns the body of the next frame. The slice is valid until the
// next call, unless owned is true (a body above LargeFrame): then the
// reader dropped it and the caller may keep it. A body larger than the
// limit is a *SizeError. An error other than a timeout leaves the reader
// unusable.
func (f *FrameReader) Next() (body []byte, owned bool, err error) {
	body, owned, _, err = f.NextSplit(nil)
	return body, owned, err
}

// NextSplit is Next, with split (nil: none) asked where the body of a
// frame of MinSplit bytes or more goes. When split gives a tail, the rest
// of the body is read straight into it, body is the frame's head only
// (valid until the next call) and intoTail is true. A read cut off before
// the body is complete (a timeout, or any other error) first moves what
// it read into the reader's own buffer, so that the tail is never written
// after NextSplit returns: the next call resumes the frame as if it had
// never been split, and returns its whole body.
func (f *FrameReader) NextSplit(split Split) (body []byte, owned, intoTail bool, err error) {
	for f.headerN < HeaderSize {
		n, err := f.r.Read(f.header[f.headerN:])
		f.headerN += n
		if err != nil && f.headerN < HeaderSize {
			if err == io.EOF && f.headerN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, false, err
		}
	}
	if f.bodyLen < 0 {
		size := binary.BigEndian.Uint32(f.header[:])
		if uint64(size) > uint64(f.maxSize) {
			return nil, false, false, &SizeError{Size: size, Limit: f.maxSize}
		}
		f.bodyLen = int(size)
		if split != nil && f.bodyLen >= max(f.minSplit, HeadSize) {
			head, ok, err := f.split(split)
			if err != nil || ok {
				return head, false, ok, err
			}
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
			return nil, false, false, err
		}
	}
	body = f.body
	f.headerN, f.bodyLen, f.bodyN = 0, -1, 0
	if cap(f.body) > LargeFrame {
		f.body, owned = nil, true // do not pin a large buffer to an idle worker
	}
	return body, owned, false, nil
}

// ensureBody makes f.body the current frame's length.
func (f *FrameReader) ensureBody() {
	if cap(f.body) < f.bodyLen {
		f.body = make([]byte, f.bodyLen)
	}
	f.body = f.body[:f.bodyLen]
}

// split reads the current frame's body, whose length is known and none of
// it read, as split says: the head, then the tail straight into split's
// slice. It returns the head and true, or false without an error when
// split gave no tail: then the head is in f.body (f.bodyN), for Next's
// loop to read the rest. On an error, what was read is in f.body, as if
// Next had read it.
func (f *FrameReader) split(split Split) ([]byte, bool, error) {
	n, err := io.ReadFull(f.r, f.head[:])
	if err != nil {
		f.unsplit(f.head[:n], nil)
		return nil, false, eofInFrame(err)
	}
	headLen, tail := split(f.head[:], f.bodyLen)
	if tail == nil {
		f.unsplit(f.head[:], nil)
		return nil, false, nil
	}
	if headLen < 0 || headLen > HeadSize || len(tail) != f.bodyLen-headLen {
		panic(fmt.Sprintf("wire: Split gave a head of %d bytes and a tail of %d for a %d-byte body", headLen, len(tail), f.bodyLen))
	}
	k := copy(tail, f.head[headLen:])
	n, err = io.ReadFull(f.r, tail[k:])
	if err != nil {
		f.unsplit(f.head[:headLen], tail[:k+n])
		return nil, false, eofInFrame(err)
	}
	f.headerN, f.bodyLen = 0, -1
	return f.head[:headLen], true, nil
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
