package pypool

// protocol.go knows messages, not processes: message kinds, encoding a
// call and parsing the worker's messages, on top of internal/wire (frames,
// the handshake's fields, the msgpack reader). Values inside the messages
// are decoded in decode.go. The same layout is implemented on the Python side in
// python/pypool_runtime/worker.py (messages), frames.py (frames) and
// codec.py (the hand-decoded head of a CALL frame, the head of a large bytes
// RESULT).
//
// A frame is a 4-byte big-endian length followed by a msgpack body. Every body
// is a msgpack array whose first element is the message kind:
//
//	HELLO  (Python->Go, first frame) [1, version, pid, python_version, codec, error|nil, executable, setup_seconds]
//	CALL   (Go->Python)              [2, id, function, args, kwargs|nil, context]
//	RESULT (Python->Go)              [3, id, value]
//	ERROR  (Python->Go)              [4, id, code, type, message, traceback, hint]
//
// A CALL's context (and a STREAM's, after its window) is there only when
// the call has something to say of it (callctx.go): a map of the entries
// that apply, "r" the seconds left before the caller's deadline (a float,
// measured as the frame is written), "a" the attempt (an int, 2 and up:
// a retry under Config.CrashRetries), "i" the SIGINTs Go sent to calls
// that were answered without being interrupted since the last call frame
// that carried them (an int, 1 and up: process.lateInterrupts; the worker
// tells by it an interrupt that came before the call began from one that
// came after the last reply; not on the frame of a task of
// Config.AsyncCalls, whose thread does not read it: the next frame the
// worker's main thread reads carries it), "m" the metadata (a map of str
// to str), "tp" and "ts" the W3C traceparent and tracestate. A call
// without a deadline, a retry, late interrupts, metadata or a trace
// context has the frame without it.
//
// HELLO's executable (sys.executable, "" when unknown) and setup_seconds
// (how long Config.SetUp took, a float) may be missing. ERROR's hint (how
// to fix it, PythonError.Hint) may be missing; so may the fifth field of
// HELLO's error, its hint.
//
// Messages that flow while a call runs (stream.go, callback.go):
//
//	STREAM   (Go->Python) [5, id, function, args, kwargs|nil, window, context]  a call whose result is iterated
//	ITEMS    (Python->Go) [6, id, [item, ...]]                         the next items of stream id
//	CREDIT   (Go->Python) [7, id, n]                                   n more ITEMS frames may be sent
//	CLOSE    (Go->Python) [8, id]                                      stop stream id (generator.close())
//	CALLBACK (Python->Go) [9, seq, name, args]                         call_go(name, *args) in the innermost call
//	CB_RESULT (Go->Python) [10, seq, value]                            the Go function's result
//	CB_ERROR (Go->Python) [11, seq, code, type, message]               its error, panic, or a refusal
//
// A stream ends with the RESULT (value nil) or ERROR of its id. While
// Python waits for a callback's answer, Go may send a CALL or STREAM (a
// nested call made with the callback's context): its reply comes first.
// Kinds 12 to 15 are reserved.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/pypool/pypool/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
)

// Message kinds.
const (
	kindHello  = wire.KindHello
	kindCall   = 2
	kindResult = 3
	kindError  = 4

	kindStream         = 5
	kindItems          = 6
	kindCredit         = 7
	kindClose          = 8
	kindCallback       = 9
	kindCallbackResult = 10
	kindCallbackError  = 11

	kindCancel = 12 // [12, id]: cancel the task of call id (Config.AsyncCalls, mux.go)
)

// frameHeaderSize is the size of the length prefix of every frame.
const frameHeaderSize = wire.HeaderSize

// DefaultMaxMessageSize is the default limit for one encoded message in either
// direction (64 MiB).
const DefaultMaxMessageSize = 64 << 20

// valueCodec is what encoding and decoding values takes from a pool's
// Config: the struct tag and the extensions. It lives in the workerSpec,
// is never changed after New, and is shared by the pool's workers.
type valueCodec struct {
	structTag string      // Config.StructTag
	exts      extRegistry // Config.Extensions
	shared    *sharedMem  // one worker's shared memory (in its process's copy); nil: none
}

// callEncoder encodes CALL frames into a buffer it reuses from call to call.
// It is owned by one worker and is not safe for concurrent use.
type callEncoder struct {
	buf     bytes.Buffer
	enc     *msgpack.Encoder
	maxSize int
	exts    *extRegistry // nil when no extension is registered

	// shared receives byte slices and Arrays of sharedFrom bytes or more
	// (nil: none does); sharedBytes counts what the current call put there.
	shared      *sharedMem
	sharedFrom  int
	sharedBytes int
}

// newCallEncoder returns an encoder of calls of at most maxSize bytes with
// the codec's settings (nil: the defaults).
func newCallEncoder(maxSize int, codec *valueCodec) *callEncoder {
	e := &callEncoder{maxSize: maxSize}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.UseCompactInts(true)
	if codec != nil && codec.structTag != "" {
		e.enc.SetCustomStructTag(codec.structTag)
	}
	if codec != nil && codec.exts.byType != nil {
		e.exts = &codec.exts
	}
	return e
}

// encode returns the complete frame (length prefix included) for a call. The
// returned slice is valid until the next call of encode.
func (e *callEncoder) encode(id uint64, fn string, args []any, kwargs Kwargs) ([]byte, error) {
	return e.encodeCall(id, fn, args, kwargs, 0, callContext{}, time.Time{})
}

// encodeCall is encode for a CALL (window 0) or a STREAM frame (window > 0,
// the ITEMS frames Python may send before it waits for CREDIT), with the
// call's context cc and deadline (zero: none) as its last element when
// there is something to send of them (encodeContext).
func (e *callEncoder) encodeCall(id uint64, fn string, args []any, kwargs Kwargs, window int, cc callContext, deadline time.Time) ([]byte, error) {
	// The buffer is kept between calls, also after a large one: allocating
	// (and faulting in) a fresh one costs more than the copy it serves.
	e.buf.Reset()
	e.buf.Grow(e.sizeHint(args))
	e.sharedBytes = 0
	e.buf.Write(make([]byte, frameHeaderSize)) // the length, written by wire.PutHeader
	enc := e.enc
	fields, kind := 5, uint64(kindCall)
	if window > 0 {
		fields, kind = 6, kindStream
	}
	hasContext := !deadline.IsZero() || cc.attempt > 1 || cc.meta != nil || cc.lateInterrupts > 0
	if hasContext {
		fields++
	}
	if err := errors.Join(
		enc.EncodeArrayLen(fields), enc.EncodeUint(kind), enc.EncodeUint(id),
		enc.EncodeString(fn), enc.EncodeArrayLen(len(args)),
	); err != nil {
		return nil, err
	}
	for i, arg := range args {
		if _, ok := arg.(Kwargs); ok {
			return nil, fmt.Errorf("%w: argument %d is a Kwargs: keyword arguments go last", ErrArgNotEncodable, i)
		}
		if err := e.value(arg); isSharedFault(err) {
			return nil, err // the shared memory failed, not the argument
		} else if err != nil {
			return nil, fmt.Errorf("%w: argument %d (%T): %w", ErrArgNotEncodable, i, arg, err)
		}
	}
	if kwargs == nil {
		_ = enc.EncodeNil()
	} else if err := e.value(map[string]any(kwargs)); isSharedFault(err) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("%w: keyword arguments: %w", ErrArgNotEncodable, err)
	}
	if window > 0 {
		_ = enc.EncodeUint(uint64(window))
	}
	if hasContext {
		e.encodeContext(cc, deadline)
	}
	frame := e.buf.Bytes()
	boundFarTimes(frame[frameHeaderSize:])
	bodySize := len(frame) - frameHeaderSize
	if bodySize+e.sharedBytes > e.maxSize {
		return nil, fmt.Errorf("%w: the call to %s encodes to %d bytes, the limit is %d (Config.MaxMessageSize)",
			ErrMessageTooLarge, fn, bodySize+e.sharedBytes, e.maxSize)
	}
	wire.PutHeader(frame)
	return frame, nil
}

// encodeContext writes a call's context, the frame's last element (see
// the file's comment): the time left until deadline is measured here, as
// the frame is made, just before it is written.
func (e *callEncoder) encodeContext(cc callContext, deadline time.Time) {
	n := 0
	if !deadline.IsZero() {
		n++
	}
	if cc.attempt > 1 {
		n++
	}
	if cc.lateInterrupts > 0 {
		n++
	}
	if cc.meta != nil {
		n += cc.meta.entries
	}
	_ = e.enc.EncodeMapLen(n)
	if !deadline.IsZero() {
		_ = e.enc.EncodeString("r")
		_ = e.enc.EncodeFloat64(remainingSeconds(deadline))
	}
	if cc.attempt > 1 {
		_ = e.enc.EncodeString("a")
		_ = e.enc.EncodeUint(uint64(cc.attempt))
	}
	if cc.lateInterrupts > 0 {
		_ = e.enc.EncodeString("i")
		_ = e.enc.EncodeUint(cc.lateInterrupts)
	}
	if cc.meta != nil {
		e.buf.Write(cc.meta.encoded)
	}
}

// encodeControl returns the frame of a message that flows while a call
// runs (CREDIT, CLOSE, CB_RESULT, CB_ERROR): an array of fields elements,
// the first one kind, the others written by rest. Values in it never go
// through the shared memory. Like encode's, the frame is valid until the
// next use of the encoder.
func (e *callEncoder) encodeControl(kind uint64, fields int, rest func(e *callEncoder) error) ([]byte, error) {
	shared := e.shared
	e.shared = nil
	defer func() { e.shared = shared }()
	e.buf.Reset()
	e.buf.Write(make([]byte, frameHeaderSize))
	if err := errors.Join(e.enc.EncodeArrayLen(fields), e.enc.EncodeUint(kind)); err != nil {
		return nil, err
	}
	if err := rest(e); err != nil {
		return nil, err
	}
	frame := e.buf.Bytes()
	boundFarTimes(frame[frameHeaderSize:])
	bodySize := len(frame) - frameHeaderSize
	if bodySize > e.maxSize {
		return nil, fmt.Errorf("%w: the message encodes to %d bytes, the limit is %d (Config.MaxMessageSize)",
			ErrMessageTooLarge, bodySize, e.maxSize)
	}
	wire.PutHeader(frame)
	return frame, nil
}

// value encodes one argument. Without extensions or shared memory it is
// msgpack's Encode; with them, a walk that writes values of registered types
// as their extension (see Ext for where it looks) and large byte slices and
// Arrays into the shared memory.
func (e *callEncoder) value(v any) error {
	if e.exts == nil && e.shared == nil {
		return e.enc.Encode(v)
	}
	return e.walk(v, 0)
}

func (e *callEncoder) walk(v any, depth int) error {
	if depth > maxDecodeDepth {
		return fmt.Errorf("values nested more than %d levels deep", maxDecodeDepth)
	}
	switch v := v.(type) {
	case []any:
		if v != nil {
			return e.walkList(v, depth)
		}
	case map[string]any:
		if v != nil {
			return e.walkStringMap(v, depth)
		}
	case map[any]any:
		if v != nil {
			return e.walkMap(v, depth)
		}
	case []byte:
		if e.shared != nil && len(v) >= e.sharedFrom {
			return e.sharedSlice(v)
		}
	case Array:
		if e.shared != nil && len(v.Data) >= e.sharedFrom {
			return e.sharedArray(v)
		}
	default:
		if e.exts == nil {
			break
		}
		if x := e.exts.forValue(v); x != nil {
			return x.encodeValue(e.enc, v)
		}
	}
	return e.enc.Encode(v) // nil slices and maps too: msgpack writes nil
}

func (e *callEncoder) walkList(list []any, depth int) error {
	if err := e.enc.EncodeArrayLen(len(list)); err != nil {
		return err
	}
	for _, item := range list {
		if err := e.walk(item, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (e *callEncoder) walkStringMap(m map[string]any, depth int) error {
	if err := e.enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for k, item := range m {
		if err := e.enc.EncodeString(k); err != nil {
			return err
		}
		if err := e.walk(item, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (e *callEncoder) walkMap(m map[any]any, depth int) error {
	if err := e.enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for k, item := range m {
		if err := e.walk(k, depth+1); err != nil {
			return err
		}
		if err := e.walk(item, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// sizeHint guesses the encoded size of args from their strings, byte slices
// and Arrays, so that the buffer for a large payload is allocated once.
// Values bound for the shared memory take no room in it.
func (e *callEncoder) sizeHint(args []any) int {
	n := 64
	for _, arg := range args {
		switch v := arg.(type) {
		case []byte:
			n += e.inlineSize(len(v)) + 5
		case string:
			n += len(v) + 5
		case Array:
			n += e.inlineSize(len(v.Data)) + 64
		}
	}
	return n
}

// inlineSize is how many of size bytes go into the frame itself.
func (e *callEncoder) inlineSize(size int) int {
	if e.shared != nil && size >= e.sharedFrom {
		return 0
	}
	return size
}

// timestamp96 starts each timestamp of 12 bytes (ext 8 of length 12, type
// -1): the only form whose seconds reach beyond what boundFarTimes allows.
var timestamp96 = []byte{0xc7, 12, 0xff}

// farDays is the day count from 1970 that boundFarTimes writes a far time
// with (signed as its own): timedelta's largest, which fits a C int and
// lies beyond datetime's range on either side of 1970.
const farDays = 999_999_999

// farTimesSearch is the frame size up to which boundFarTimes searches the
// frame's bytes before it scans its values.
const farTimesSearch = 4 << 10

// boundFarTimes rewrites, in place, each timestamp in the msgpack data b
// whose day count from 1970 does not fit in 32 bits (a time.Time more than
// about 5.8 million years from 1970) with farDays days, its nanoseconds
// kept. msgpack's C extension, with which a worker decodes timestamps as
// datetimes, passes the day count through a C int: such a time would wrap
// into datetime's range and arrive as another date (2^32 days and 5
// seconds as 1970-01-01 00:00:05), as it would with the pure codec, which
// reads the bytes as the C extension does. Bound, it is refused as any
// time beyond datetime's years 1 to 9999 is ("date value out of range",
// ErrBadArguments). Nearer times, and frames without a 12-byte timestamp
// (nearly all: a search of the frame for its first bytes), are untouched.
//
// Up to farTimesSearch bytes, a search for the timestamp's first bytes
// decides whether to scan; above, the scan of the values runs at once: it
// steps over the payloads of bytes and strings, where the search would read
// every byte of a large argument (about 30 µs a MiB).
func boundFarTimes(b []byte) {
	if len(b) <= farTimesSearch && !bytes.Contains(b, timestamp96) {
		return
	}
	_ = wire.EachExt(b, func(code int8, payload []byte) {
		if code != -1 || len(payload) != 12 {
			return
		}
		seconds := int64(binary.BigEndian.Uint64(payload[4:]))
		if days := seconds / 86400; days >= math.MinInt32 && days <= math.MaxInt32 {
			return
		}
		far := int64(farDays * 86400)
		if seconds < 0 {
			far = -far
		}
		binary.BigEndian.PutUint64(payload[4:], uint64(far))
	})
}

// frameReader reads the worker's frames (wire.FrameReader); a frame above
// the limit is ErrMessageTooLarge.
type frameReader struct {
	r *wire.FrameReader
}

func newFrameReader(r io.Reader, maxSize int) *frameReader {
	return &frameReader{wire.NewFrameReader(r, maxSize)}
}

// next returns the body of the next frame. The slice is valid until the next
// call, unless owned is true: then the reader dropped it and the caller may
// keep it. An error other than a timeout leaves the reader unusable.
func (f *frameReader) next() (body []byte, owned bool, err error) {
	body, owned, _, err = f.nextSplit(nil, 0, nil)
	return body, owned, err
}

// nextSplit is next, with split asked whether a large frame is split
// after its head (wire.FrameReader.NextSplit): when out is not nil, body
// is the frame's head and out is buf extended by the rest of the body.
func (f *frameReader) nextSplit(split wire.Split, key uint64, buf []byte) (body []byte, owned bool, out []byte, err error) {
	body, owned, out, err = f.r.NextSplit(split, key, buf)
	if tooLarge, ok := err.(*wire.SizeError); ok {
		err = fmt.Errorf("%w: the worker sent a %d-byte message, the limit is %d (Config.MaxMessageSize)",
			ErrMessageTooLarge, tooLarge.Size, tooLarge.Limit)
	}
	return body, owned, out, err
}

// resultBytesHead is the wire.Split of a CallBytes call: it reads head,
// the first bytes of a body of size bytes, as the head of the RESULT of
// call id whose value is a bin filling the rest of the body, and returns
// the head's length (the bin's header included); -1 for any other
// message.
func resultBytesHead(head []byte, size int, id uint64) (headLen int) {
	d := wire.NewReader(head)
	if d.ArrayLen() != 3 || d.Int() != kindResult {
		return -1
	}
	if got, big, isInt := d.Integer(); !isInt || big || got != id || d.Err() != nil {
		return -1
	}
	c := d.Byte() // the bin's header, read on from the id
	if c < 0xc4 || c > 0xc6 {
		return -1
	}
	n := d.Size(1 << (c - 0xc4))
	if d.Err() != nil {
		return -1
	}
	headLen = len(head) - d.Len()
	if n <= 0 || n != size-headLen {
		return -1
	}
	return headLen
}

// binHeaderOf returns the length that b, the header of a msgpack bin and
// nothing else, declares; -1 when b is not that.
func binHeaderOf(b []byte) int {
	d := wire.NewReader(b)
	c := d.Byte()
	if c < 0xc4 || c > 0xc6 {
		return -1
	}
	n := d.Size(1 << (c - 0xc4))
	if d.Err() != nil || d.Len() != 0 {
		return -1
	}
	return n
}

// hello is the worker's handshake (wire.Hello), its error a *PythonError.
type hello struct {
	version       int64
	pid           int
	pythonVersion string
	codec         string
	err           *PythonError  // the module failed to import
	executable    string        // sys.executable; "" when unknown
	setUp         time.Duration // how long Config.SetUp ran
}

// reply is a RESULT or ERROR message. For a RESULT, value holds the msgpack
// encoding of the returned value, still to be decoded (whether the decoded
// value may alias it is frameReader.next's owned).
//
// decodeReply also parses the messages Python sends while a call runs: an
// ITEMS frame (value holds the msgpack array of the items) and a CALLBACK
// (id is its seq, name the Go function, value the msgpack array of args).
type reply struct {
	kind  int64
	id    uint64
	value []byte
	err   *PythonError
	name  string
}

// decodeHello parses a HELLO frame.
func decodeHello(body []byte) (hello, error) {
	w, err := wire.DecodeHello(body)
	if err != nil {
		return hello{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	h := hello{version: w.Version, pid: w.PID, pythonVersion: w.PythonVersion, codec: w.Codec,
		executable: w.Executable, setUp: w.SetUp}
	if e := w.Error; e != nil {
		h.err = &PythonError{Code: e.Code, Type: e.Type, Message: e.Message, Traceback: e.Traceback, Hint: e.Hint}
	}
	return h, nil
}

// decodeReply parses a RESULT or ERROR frame.
func decodeReply(body []byte) (reply, error) {
	var r reply
	d := wire.NewReader(body)
	n := d.ArrayLen()
	r.kind = d.Int()
	r.id = d.Uint()
	switch {
	case d.Err() != nil:
	case r.kind == kindResult && n == 3:
		r.value = d.Rest()
		return r, nil
	case r.kind == kindError && (n == 6 || n == 7):
		r.err = pythonError(&d)
		if n == 7 {
			r.err.Hint = d.Str()
		}
	case r.kind == kindItems && n == 3:
		if c := d.Byte(); d.Err() == nil && !(c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd) {
			d.Fail("the items are not an array")
		}
		if d.Err() == nil {
			r.value = body[len(body)-d.Len()-1:]
			return r, nil
		}
	case r.kind == kindCallback && n == 4:
		r.name = d.Str()
		r.value = d.Rest()
		if d.Err() == nil && (len(r.value) == 0 || !(r.value[0] >= 0x90 && r.value[0] <= 0x9f || r.value[0] == 0xdc || r.value[0] == 0xdd)) {
			d.Fail("the callback's arguments are not an array")
		}
	default:
		return r, fmt.Errorf("%w: unexpected message kind %d with %d fields", ErrProtocol, r.kind, n)
	}
	if d.Err() != nil {
		return r, fmt.Errorf("%w: bad reply: %v", ErrProtocol, d.Err())
	}
	return r, nil
}

// pythonError reads the four fields code, type, message and traceback.
func pythonError(d *wire.Reader) *PythonError {
	return &PythonError{Code: d.Str(), Type: d.Str(), Message: d.Str(), Traceback: d.Str()}
}
