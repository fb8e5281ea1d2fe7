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
	headerN int    // bytes of header read so far
	body    []byte // reused between frames
	bodyLen int    // -1 while the header is incomplete
	bodyN   int    // bytes of body read so far
}

// NewFrameReader returns a reader of frames from r whose bodies are at most
// maxSize bytes.
func NewFrameReader(r io.Reader, maxSize int) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), maxSize: maxSize, bodyLen: -1}
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
	for f.headerN < HeaderSize {
		n, err := f.r.Read(f.header[f.headerN:])
		f.headerN += n
		if err != nil && f.headerN < HeaderSize {
			if err == io.EOF && f.headerN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, err
		}
	}
	if f.bodyLen < 0 {
		size := binary.BigEndian.Uint32(f.header[:])
		if uint64(size) > uint64(f.maxSize) {
			return nil, false, &SizeError{Size: size, Limit: f.maxSize}
		}
		f.bodyLen = int(size)
		if cap(f.body) < f.bodyLen {
			f.body = make([]byte, f.bodyLen)
		}
		f.body = f.body[:f.bodyLen]
	}
	for f.bodyN < f.bodyLen {
		n, err := f.r.Read(f.body[f.bodyN:])
		f.bodyN += n
		if err != nil && f.bodyN < f.bodyLen {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, err
		}
	}
	body = f.body
	f.headerN, f.bodyLen, f.bodyN = 0, -1, 0
	if cap(f.body) > LargeFrame {
		f.body, owned = nil, true // do not pin a large buffer to an idle worker
	}
	return body, owned, nil
}
