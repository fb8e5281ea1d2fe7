package pypool

// stream.go is a Python generator (or any iterator) become a Go iterator:
// Pool.Stream, Worker.Stream and StreamAs. On the wire (protocol.go) a
// STREAM frame starts the call; Python sends the items in ITEMS frames of
// one or more items, at most streamWindow frames ahead of what Go has
// consumed, and Go gives credit back as its loop consumes them. Breaking
// out of the loop sends CLOSE (Python closes the generator: its finally
// blocks run) and waits for the stream's end within InterruptGrace. The
// process's side of all of it is exchange.go's. The iteration runs on the
// goroutine of the range loop: nothing is read ahead beyond the frame
// being consumed, so neither side holds more than the window whatever the
// pace of the loop.

import (
	"context"
	"iter"
)

// streamWindow is how many ITEMS frames Python may send before it waits
// for credit; Go gives back half of it at a time.
const streamWindow = 8

// itemFunc receives each streamed item's msgpack encoding (valid during
// the call only) and the codec to decode it with; false stops the stream.
// A fault (a sharedFault: the item held a shared-memory reference, which
// the runtime never sends in an item) stops it too, and loses the worker.
type itemFunc func(b []byte, codec *valueCodec) (more bool, fault error)

// Stream calls fn, a Python generator function (or any function that
// returns an iterator: an object with __next__, or an async iterator), and
// returns an iterator over the items it yields, decoded as Call decodes a
// result. Each item reaches the loop as Python produces it, normally within
// 2 ms (items produced within that time travel in one batch, of up to 256),
// and Python runs at most 8 batches ahead of the loop (it waits for the
// loop otherwise), so a slow loop never makes either side buffer the
// sequence.
// A result that is not an iterator is a *PythonError with Code
// "not_an_iterator" (TypeError), whose Hint says to use Call.
//
//	for item, err := range pool.Stream(ctx, "read_rows", path) {
//		if err != nil {
//			return err
//		}
//		...
//	}
//
// A worker is checked out when the loop starts and checked in when it ends.
// Breaking out of the loop (or a panic in its body) closes the generator in
// Python (GeneratorExit: its finally blocks run) before the worker goes
// back to the pool. An exception in the generator ends the loop with a
// *PythonError after the items before it. ctx bounds the whole loop as it
// bounds a call (Config.CallTimeout when it has no deadline): when it ends,
// the loop ends with ctx's error at its next item (no item is given after
// it) and the worker is interrupted as a cut-off call's. A worker that dies gives an error wrapping ErrWorkerCrashed.
//
// The body of the loop must not wait for the same pool's workers when all
// are busy (the stream holds one). With a callback's context (Callback),
// the stream runs on the worker that waits for the callback.
func (p *Pool) Stream(ctx context.Context, fn string, args ...any) iter.Seq2[any, error] {
	return streamValues(ctx, p, fn, args)
}

// Stream is Pool.Stream on this worker, inside its transaction. The body of
// the loop must not call the Worker: such calls return an error wrapping
// ErrWorkerBusy.
func (w *Worker) Stream(ctx context.Context, fn string, args ...any) iter.Seq2[any, error] {
	return streamValues(ctx, w, fn, args)
}

// StreamAs is Stream with each item decoded into a T, as CallAs decodes a
// result. An item that does not fit T ends the loop with an error wrapping
// ErrResultNotDecodable (and closes the generator).
//
//	for row, err := range pypool.StreamAs[Row](ctx, pool, "read_rows", path) {
func StreamAs[T any](ctx context.Context, c Caller, fn string, args ...any) iter.Seq2[T, error] {
	return yieldItems(ctx, c, fn, args, func(b []byte, codec *valueCodec) (item T, err error) {
		err = decodeValueInto(b, &item, codec)
		return item, err
	})
}

// streamValues is Stream for a *Pool or a *Worker.
func streamValues(ctx context.Context, c Caller, fn string, args []any) iter.Seq2[any, error] {
	return yieldItems(ctx, c, fn, args, func(b []byte, codec *valueCodec) (any, error) {
		return decodeValue(b, false, codec)
	})
}

// yieldItems is the loop of Stream and StreamAs: each item decoded by
// decode is yielded; a decoding error is yielded and ends the stream, as
// does the loop's break; the stream's own error is yielded last, unless
// the loop ended it.
func yieldItems[T any](ctx context.Context, c Caller, fn string, args []any, decode func([]byte, *valueCodec) (T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		stopped := false
		err := c.streamInto(ctx, fn, args, func(b []byte, codec *valueCodec) (bool, error) {
			item, err := decode(b, codec)
			if err != nil || !yield(item, nil) {
				if err != nil {
					yield(item, err)
				}
				stopped = true
				if isSharedFault(err) {
					return false, err
				}
				return false, nil
			}
			return true, nil
		})
		if err != nil && !stopped {
			var zero T
			yield(zero, err)
		}
	}
}
