package pypool

// callctx.go is the call's context as Python sees it (docs/call-context.md):
// metadata a caller attaches to its ctx (WithMetadata), the W3C trace
// context a Tracer attaches (WithTraceContext), and what the CALL or
// STREAM frame carries of them, with the time left before ctx's deadline
// and the attempt number (protocol.go's callEncoder.encodeContext writes
// it; Python's pypool_runtime/callctx.py reads it).

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Limits of the metadata a context carries (WithMetadata). A call whose
// context breaks one fails before any worker is used, with a
// *MetadataError that names the limit.
const (
	// MaxMetadataEntries is the most keys a context's metadata holds.
	MaxMetadataEntries = 64
	// MaxMetadataKeySize is the longest key, in bytes.
	MaxMetadataKeySize = 128
	// MaxMetadataSize is the most bytes of keys and values together.
	MaxMetadataSize = 8 << 10
)

// MetadataError is why a context's metadata cannot travel with a call (see
// WithMetadata): Key is the offending key ("" when the whole is too
// large; a key longer than MaxMetadataKeySize is cut to its first 32 bytes
// or fewer, whole runes, and "..."), Limit names the limit broken ("MaxMetadataEntries",
// "MaxMetadataKeySize", "MaxMetadataSize", "empty key", "UTF-8"). It wraps
// ErrArgNotEncodable: nothing was sent, no worker was used.
type MetadataError struct {
	Key    string
	Limit  string
	Detail string
}

// Error says which key broke which limit.
func (e *MetadataError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("pypool: call metadata: %s (%s)", e.Detail, e.Limit)
	}
	return fmt.Sprintf("pypool: call metadata key %q: %s (%s)", e.Key, e.Detail, e.Limit)
}

// Unwrap returns ErrArgNotEncodable.
func (e *MetadataError) Unwrap() error { return ErrArgNotEncodable }

// callMeta is what WithMetadata and WithTraceContext put in a context: the
// merged metadata and trace context, checked and encoded once, so that a
// call only copies them into its frame.
type callMeta struct {
	md          map[string]string
	traceparent string
	tracestate  string
	err         error  // a *MetadataError: the calls made with the context fail
	encoded     []byte // the entries of the frame's context map: "m", "tp", "ts"
	entries     int    // how many entries encoded holds
}

type callMetaKey struct{}

// metaOf returns the callMeta ctx carries, nil when none.
func metaOf(ctx context.Context) *callMeta {
	m, _ := ctx.Value(callMetaKey{}).(*callMeta)
	return m
}

// WithMetadata returns a context whose calls (every form: Call, TryCall,
// CallAs, CallBytes, Stream, StreamAs, Worker.Call, Worker.Stream, calls
// made with a callback's context) carry md to Python, where
// pypool.current_call().metadata reads it. md is merged over the metadata
// ctx already carries: its keys replace the outer ones, the others stay
// (none is removed: an empty value is sent as ""). md is copied.
//
// Keys must be non-empty, keys and values valid UTF-8, and the merged
// metadata within MaxMetadataEntries, MaxMetadataKeySize and
// MaxMetadataSize. WithMetadata does not fail: a call made with a context
// that breaks a limit returns a *MetadataError (wrapping
// ErrArgNotEncodable) before any worker is used.
//
//	ctx = pypool.WithMetadata(ctx, map[string]string{"tenant": "acme", "request_id": id})
func WithMetadata(ctx context.Context, md map[string]string) context.Context {
	outer := metaOf(ctx)
	m := &callMeta{}
	if outer != nil {
		m.traceparent, m.tracestate = outer.traceparent, outer.tracestate
		m.md = maps.Clone(outer.md)
	}
	if len(md) > 0 && m.md == nil {
		m.md = make(map[string]string, len(md))
	}
	maps.Copy(m.md, md)
	m.seal()
	return context.WithValue(ctx, callMetaKey{}, m)
}

// Metadata returns a copy of the metadata ctx carries (WithMetadata), nil
// when it carries none. A Go callback reads its call's metadata so.
func Metadata(ctx context.Context) map[string]string {
	if m := metaOf(ctx); m != nil && len(m.md) > 0 {
		return maps.Clone(m.md)
	}
	return nil
}

// WithTraceContext returns a context whose calls carry the W3C trace
// context traceparent (and tracestate, "" for none) to Python, where
// pypool.current_call().traceparent and pypool.trace_context() read it.
// A Tracer's TraceCallStart sets it on the context it returns (the otel
// adapter does), so that Python's spans are children of the attempt's
// span. A traceparent that is not of the W3C form
// (version-traceid-parentid-flags, lowercase hex; a later version's
// fields after those printable ASCII) is not sent, nor is a traceparent
// or a tracestate longer than 512 bytes or with bytes that are not
// printable ASCII; neither ever fails a call.
func WithTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	if !validTraceparent(traceparent) {
		return ctx
	}
	if len(tracestate) > maxTraceHeader || !printableASCII(tracestate) {
		tracestate = ""
	}
	outer := metaOf(ctx)
	m := &callMeta{traceparent: traceparent, tracestate: tracestate}
	if outer != nil {
		m.md = outer.md // never changed once sealed
	}
	m.seal()
	return context.WithValue(ctx, callMetaKey{}, m)
}

// validTraceparent reports whether s is a W3C traceparent of version 00,
// or of a later version whose first 55 bytes are of version 00's form
// and whose rest (after a '-') is printable ASCII, at most
// maxTraceHeader bytes in all: 2-32-16-2 lowercase hex digits, an id not
// all zeros. (What follows the 55 bytes goes to Python as it is: bytes
// that are not UTF-8 would not decode there, and a long one would make
// the frame too large.)
func validTraceparent(s string) bool {
	if len(s) < 55 || (len(s) > 55 && (s[:2] == "00" || s[55] != '-')) || s[:2] == "ff" ||
		len(s) > maxTraceHeader || !printableASCII(s[55:]) {
		return false
	}
	for i := range 55 {
		c := s[i]
		switch i {
		case 2, 35, 52:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return s[3:35] != "00000000000000000000000000000000" && s[36:52] != "0000000000000000"
}

// maxTraceHeader is the longest traceparent and tracestate sent.
const maxTraceHeader = 512

// printableASCII reports whether s is all printable ASCII (space to '~').
func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// seal checks m's metadata against the limits and encodes what the frame
// carries of m.
func (m *callMeta) seal() {
	if m.err = checkMetadata(m.md); m.err != nil {
		return
	}
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	var buf bytesWriter
	enc.Reset(&buf)
	if len(m.md) > 0 {
		m.entries++
		_ = enc.EncodeString("m")
		_ = enc.EncodeMapLen(len(m.md))
		for _, k := range slices.Sorted(maps.Keys(m.md)) {
			_ = enc.EncodeString(k)
			_ = enc.EncodeString(m.md[k])
		}
	}
	if m.traceparent != "" {
		m.entries++
		_ = enc.EncodeString("tp")
		_ = enc.EncodeString(m.traceparent)
		if m.tracestate != "" {
			m.entries++
			_ = enc.EncodeString("ts")
			_ = enc.EncodeString(m.tracestate)
		}
	}
	m.encoded = buf
}

// bytesWriter is an io.Writer that appends to itself.
type bytesWriter []byte

// Write appends p.
func (b *bytesWriter) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// checkMetadata returns a *MetadataError when md breaks a limit.
func checkMetadata(md map[string]string) error {
	if len(md) > MaxMetadataEntries {
		return &MetadataError{Limit: "MaxMetadataEntries",
			Detail: fmt.Sprintf("%d keys, at most %d", len(md), MaxMetadataEntries)}
	}
	size := 0
	for _, k := range slices.Sorted(maps.Keys(md)) {
		v := md[k]
		switch {
		case k == "":
			return &MetadataError{Limit: "empty key", Detail: "a key is empty"}
		case len(k) > MaxMetadataKeySize:
			return &MetadataError{Key: keyHead(k) + "...", Limit: "MaxMetadataKeySize",
				Detail: fmt.Sprintf("the key is %d bytes, at most %d", len(k), MaxMetadataKeySize)}
		case !utf8.ValidString(k):
			return &MetadataError{Key: k, Limit: "UTF-8", Detail: "the key is not valid UTF-8"}
		case !utf8.ValidString(v):
			return &MetadataError{Key: k, Limit: "UTF-8", Detail: "the value is not valid UTF-8 (Python receives str)"}
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataSize {
		return &MetadataError{Limit: "MaxMetadataSize",
			Detail: fmt.Sprintf("keys and values are %d bytes, at most %d", size, MaxMetadataSize)}
	}
	return nil
}

// keyHead is the first 32 bytes of the over-long key k, or fewer: not a
// partial rune of a valid key.
func keyHead(k string) string {
	n := 32
	for n > 0 && !utf8.RuneStart(k[n]) {
		n--
	}
	return k[:n]
}

// callContext is what one attempt sends of its context besides the
// deadline, which the encoder reads from the ctx it sends with (so that
// the time left is measured when the frame is written): the attempt (1,
// 2, ... under Config.CrashRetries; 0 is 1) and the metadata and trace
// context; and the worker's late interrupts (process.lateInterrupts), set
// as the call is sent. Its zero value sends nothing: the frame is as
// without.
type callContext struct {
	attempt        int
	meta           *callMeta
	lateInterrupts uint64
}

// callContextOf returns the callContext of attempt (0-based) of a call
// made with ctx; traced is the Tracer's context of the attempt (nil when
// untraced), whose trace context wins. err is a *MetadataError.
func callContextOf(ctx, traced context.Context, attempt int) (callContext, error) {
	cc := callContext{attempt: attempt + 1, meta: metaOf(ctx)}
	if traced != nil && traced != ctx {
		if m := metaOf(traced); m != nil {
			cc.meta = m
		}
	}
	switch {
	case cc.meta == nil:
	case cc.meta.err != nil:
		return cc, cc.meta.err
	case cc.meta.entries == 0:
		cc.meta = nil // nothing to send
	}
	return cc, nil
}

// remainingSeconds is the time left until deadline, in seconds, never
// below 0.
func remainingSeconds(deadline time.Time) float64 {
	return max(time.Until(deadline).Seconds(), 0)
}
