package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// ProtocolVersion is the version of the wire protocol spoken by pypool and
// announced by the Python runtime in its HELLO frame.
const ProtocolVersion = 1

// KindHello is the message kind of the handshake, the first element of the
// array of the first frame a worker sends.
const KindHello = 1

// Hello is the worker's handshake:
//
//	[1, version, pid, python_version, codec, error|nil, executable, setup_seconds]
//
// executable and setup_seconds may be missing.
type Hello struct {
	Version       int64
	PID           int
	PythonVersion string
	Codec         string
	Error         *HelloError   // the module failed to import, or the set-up failed; nil: neither
	Executable    string        // sys.executable; "" when unknown
	SetUp         time.Duration // how long the set-up ran
}

// HelloError is the error a handshake carries: the fields of a Python
// exception, code being why the worker could not start, and hint what the
// runtime adds to say how to fix it (a fifth field, which may be missing).
type HelloError struct {
	Code, Type, Message, Traceback, Hint string
}

// DecodeHello parses a HELLO frame's body. It refuses a handshake of
// another ProtocolVersion.
func DecodeHello(body []byte) (Hello, error) {
	var h Hello
	d := NewReader(body)
	n := d.ArrayLen()
	kind := d.Int()
	if d.err != nil || n < 6 || n > 8 || kind != KindHello {
		return h, fmt.Errorf("the first message is not a handshake (%d fields, kind %d): is the interpreter running the pypool runtime?",
			n, kind)
	}
	h.Version = d.Int()
	h.PID = int(d.Int())
	h.PythonVersion = d.Str()
	h.Codec = d.Str()
	if d.peekNil() {
		d.skipNil()
	} else {
		fields := d.ArrayLen()
		if fields != 4 && fields != 5 {
			d.Fail("the handshake error does not have 4 or 5 fields")
		}
		h.Error = &HelloError{Code: d.Str(), Type: d.Str(), Message: d.Str(), Traceback: d.Str()}
		if fields == 5 {
			h.Error.Hint = d.Str()
		}
	}
	if n >= 7 {
		h.Executable = d.Str()
	}
	if n == 8 {
		seconds, ok := d.float()
		if !ok || !(seconds >= 0 && seconds <= 1e9) { // NaN too
			d.Fail("the set-up's duration is not a number of seconds")
		}
		h.SetUp = time.Duration(seconds * float64(time.Second))
	}
	if d.err != nil {
		return h, fmt.Errorf("bad handshake: %v", d.err)
	}
	if h.Version != ProtocolVersion {
		return h, fmt.Errorf("the worker speaks protocol version %d, this package speaks %d",
			h.Version, ProtocolVersion)
	}
	return h, nil
}

// float reads a float 32 or 64; ok is false, and the value skipped, for
// any other value.
func (d *Reader) float() (v float64, ok bool) {
	if len(d.b) == 0 {
		d.Byte() // the error of a message cut short
		return 0, false
	}
	switch d.b[0] {
	case 0xca:
		d.b = d.b[1:]
		if p := d.Take(4); p != nil {
			return float64(math.Float32frombits(binary.BigEndian.Uint32(p))), true
		}
		return 0, false
	case 0xcb:
		d.b = d.b[1:]
		if p := d.Take(8); p != nil {
			return math.Float64frombits(binary.BigEndian.Uint64(p)), true
		}
		return 0, false
	}
	d.Skip()
	return 0, false
}
