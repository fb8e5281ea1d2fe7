package pypool

// shm_codec.go writes and reads the references to the shared memory (see
// shm.go) inside msgpack values:
//
//	ext 126 SHM_BYTES  [offset, length]                -> []byte
//	ext 125 SHM_ARRAY  [dtype, shape, offset, length]  -> Array
//
// Go writes them for byte slices and Arrays of Config.SharedMemoryThreshold
// bytes or more found where the call encoder walks (arguments, Kwargs
// values, []any and maps); the worker for large bytes results and arrays.

import (
	"bytes"
	"fmt"
	"math"

	"github.com/pypool/pypool/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
)

// sharedSlice puts p into the shared memory and writes a SHM_BYTES
// reference to it.
func (e *callEncoder) sharedSlice(p []byte) error {
	offset, err := e.putShared(p)
	if err != nil {
		return err
	}
	var buf [32]byte
	payload := wire.AppendUint(wire.AppendUint(append(buf[:0], 0x92), uint64(offset)), uint64(len(p)))
	return e.writeExt(extShmBytes, payload)
}

// sharedArray puts a's data into the shared memory and writes a SHM_ARRAY
// reference to it.
func (e *callEncoder) sharedArray(a Array) error {
	if err := a.validate(); err != nil {
		return err
	}
	offset, err := e.putShared(a.Data)
	if err != nil {
		return err
	}
	var buf [96]byte
	payload := appendNDArrayHeader(buf[:0], a)
	payload[0] = 0x94 // [dtype, shape, offset, length]
	payload = wire.AppendUint(wire.AppendUint(payload, uint64(offset)), uint64(len(a.Data)))
	return e.writeExt(extShmNDArray, payload)
}

// putShared copies p into the shared memory, within Config.MaxMessageSize
// for the whole call.
func (e *callEncoder) putShared(p []byte) (int, error) {
	if e.sharedBytes+len(p) > e.maxSize {
		return 0, fmt.Errorf("%w: the call's values take more than %d bytes (Config.MaxMessageSize)",
			ErrMessageTooLarge, e.maxSize)
	}
	offset, err := e.shared.put(p)
	if err != nil {
		return 0, err
	}
	e.sharedBytes += len(p)
	return offset, nil
}

func (e *callEncoder) writeExt(code int8, payload []byte) error {
	if err := e.enc.EncodeExtHeader(code, len(payload)); err != nil {
		return err
	}
	_, err := e.enc.Writer().Write(payload)
	return err
}

// sharedReader resolves the shared-memory references of one reply. It
// copies what they point to out of the shared memory, never more than
// Config.MaxMessageSize for the reply in all (its inline bytes included),
// however often a hostile reply repeats a reference.
type sharedReader struct {
	mem  *sharedMem
	left int // bytes the reply may still read
}

// newSharedReader returns the reader of a reply whose msgpack value takes
// inline bytes.
func newSharedReader(mem *sharedMem, inline int) *sharedReader {
	return &sharedReader{mem: mem, left: max(mem.maxMessage-inline, 0)}
}

// resolve decodes the payload of a SHM_BYTES or SHM_ARRAY value.
func (r *sharedReader) resolve(code int8, payload []byte) (any, error) {
	if code == extShmBytes {
		return r.bytes(payload)
	}
	return r.array(payload)
}

func (r *sharedReader) bytes(payload []byte) ([]byte, error) {
	offset, length, err := bytesRef(payload)
	if err != nil {
		return nil, err
	}
	return r.read(offset, length, false)
}

// appendBytes appends the bytes a SHM_BYTES payload refers to to buf.
func (r *sharedReader) appendBytes(buf, payload []byte) ([]byte, error) {
	offset, length, err := bytesRef(payload)
	if err != nil {
		return buf, err
	}
	if length > uint64(r.left) {
		return buf, r.overBudget()
	}
	return r.mem.appendTo(buf, offset, length)
}

// bytesRef parses a SHM_BYTES payload.
func bytesRef(payload []byte) (offset, length uint64, err error) {
	d := wire.NewReader(payload)
	if n := d.ArrayLen(); d.Err() == nil && n != 2 {
		d.Fail("%d fields, not [offset, length]", n)
	}
	offset, length = d.Uint(), d.Uint()
	if d.Err() == nil && d.Len() != 0 {
		d.Fail("%d bytes after [offset, length]", d.Len())
	}
	if d.Err() != nil {
		return 0, 0, brokenByWorker("shared bytes: %v", d.Err())
	}
	return offset, length, nil
}

func (r *sharedReader) array(payload []byte) (Array, error) {
	d := wire.NewReader(payload)
	if n := d.ArrayLen(); d.Err() == nil && n != 4 {
		d.Fail("%d fields, not [dtype, shape, offset, length]", n)
	}
	wireDType := d.Str()
	ndim := d.ArrayLen()
	if d.Err() != nil {
		return Array{}, brokenByWorker("shared ndarray: bad header: %v", d.Err())
	}
	dtype, swap, err := parseWireDType(wireDType)
	if err != nil {
		return Array{}, fmt.Errorf("shared ndarray: %w", err)
	}
	shape, err := readShape(&d, ndim)
	if err != nil {
		return Array{}, fmt.Errorf("shared ndarray: %w", err)
	}
	offset, length := d.Uint(), d.Uint()
	if d.Err() == nil && d.Len() != 0 {
		d.Fail("%d bytes after the reference", d.Len())
	}
	if d.Err() != nil {
		return Array{}, brokenByWorker("shared ndarray: %v", d.Err())
	}
	n, err := elementCount(shape)
	if err != nil || n > math.MaxInt/dtype.Size() || uint64(n*dtype.Size()) != length {
		return Array{}, brokenByWorker("shared ndarray: shape %v of %s does not take the %d bytes referenced", shape, dtype, length)
	}
	data, err := r.read(offset, length, true)
	if err != nil {
		return Array{}, err
	}
	a := Array{DType: dtype, Shape: shape, Data: data}
	normalizeFromWire(a, swap)
	return a, nil
}

func (r *sharedReader) read(offset, length uint64, aligned bool) ([]byte, error) {
	if length > uint64(r.left) {
		return nil, r.overBudget()
	}
	p, err := r.mem.read(offset, length, aligned)
	if err != nil {
		return nil, err
	}
	r.left -= int(length)
	return p, nil
}

// overBudget is the error of a reply whose references add up to more than
// Config.MaxMessageSize: ErrMessageTooLarge, and a sharedFault, since only
// a worker that broke the protocol sends one (the runtime refuses such a
// reply itself): it is replaced, as one that sends an oversized frame.
func (r *sharedReader) overBudget() error {
	return &sharedFault{fmt.Errorf("%w: the worker's shared-memory references add up to more than the limit of %d bytes (Config.MaxMessageSize)",
		ErrMessageTooLarge, r.mem.maxMessage)}
}

// rewriteShared returns b with its shared-memory references replaced by
// the values they point to, inline (bin, NDARRAY), for msgpack's decoding
// of CallAs targets; b itself when it holds none.
func rewriteShared(b []byte, mem *sharedMem) ([]byte, error) {
	if !wire.ContainsExt(b, extShmBytes) && !wire.ContainsExt(b, extShmNDArray) {
		return b, nil
	}
	r := newSharedReader(mem, len(b))
	return wire.RewriteExts(b, func(code int8, payload []byte) ([]byte, bool, error) {
		if code != extShmBytes && code != extShmNDArray {
			return nil, false, nil
		}
		v, err := r.resolve(code, payload)
		if err != nil {
			return nil, false, err
		}
		var buf bytes.Buffer
		err = msgpack.NewEncoder(&buf).Encode(v) // []byte as bin, Array as NDARRAY
		return buf.Bytes(), true, err
	})
}
