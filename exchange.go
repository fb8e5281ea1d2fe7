package pypool

// exchange.go is the one loop that reads what a worker sends while a call
// runs (readReplies): a call's reply, a stream's items, callbacks, and the
// reply that a closed stream or a cut-off call still owes.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// replyWait is what a reply loop waits for, and so what it does with the
// messages on the way.
type replyWait uint8

const (
	waitCall   replyWait = iota // the reply of a call (callLocked)
	waitStream                  // the items of a stream, then its reply (streamLocked)
	waitClose                   // the reply of a closed stream; its items are dropped (closeStream)
	waitDrain                   // the reply of a cut-off call; all else is dropped (awaitInterrupted)
)

// replyLoop is one run of readReplies: the call id whose reply ends it, and
// what the caller gave it. It holds nothing that escapes (the function's
// name and a stream's items are passed apart), so that a call's into and
// sizes stay on their caller's stack.
type replyLoop struct {
	wait  replyWait
	id    uint64
	into  decodeFunc // waitCall: decodes the RESULT's value
	sizes *callSizes // waitCall: receives the reply's size; nil: not traced
}

// streamItems is what a stream's reply loop does with its items.
type streamItems struct {
	each     itemFunc    // takes each item
	codec    *valueCodec // the items' codec
	consumed int         // items taken since the last credit
	stopped  bool        // each stopped the loop; Python still iterates
}

// readReplies reads frames from the worker until the reply that ends l
// (of a call to fn; st: a stream's items, else nil) and dispatches each message by its kind: CALLBACK (onCallback), ITEMS
// (onItems), and the RESULT or ERROR of a call (onReply). It returns the
// call's outcome, or the first error, which has already recorded the
// process's new state (lost).
func (p *process) readReplies(ctx context.Context, fn string, l *replyLoop, st *streamItems) error {
	for {
		if l.wait == waitStream && ctx.Err() != nil {
			return p.failed(ctx, fn, os.ErrDeadlineExceeded, true)
		}
		body, owned, err := p.reader.next()
		if err != nil {
			return p.readFailed(ctx, fn, l, err)
		}
		if l.sizes != nil {
			l.sizes.reply = len(body)
		}
		r, err := decodeReply(body)
		if err != nil {
			return p.lost(ctx, fn, l, err)
		}
		var done bool
		switch r.kind {
		case kindCallback:
			err = p.onCallback(ctx, fn, l, r)
		case kindItems:
			done, err = p.onItems(ctx, fn, l, st, r)
		default:
			done, err = p.onReply(ctx, fn, l, r, owned)
		}
		if done || err != nil {
			return err
		}
	}
}

// onCallback handles a CALLBACK: a call or a stream runs it (serveCallback);
// while a stream closes or a cut-off call drains, its caller has gone and
// it is refused.
func (p *process) onCallback(ctx context.Context, fn string, l *replyLoop, r reply) error {
	var err error
	switch l.wait {
	case waitCall, waitStream:
		return p.serveCallback(ctx, fn, r)
	case waitClose:
		err = p.refuseCallback(r, "the stream was closed")
	default:
		// The cut-off call's Python code asks for a callback: it gets an
		// error, not an answer from Go code whose caller has gone.
		err = p.refuseCallback(r, "the call's context ended")
	}
	if err != nil {
		return p.lost(ctx, fn, l, err)
	}
	return nil
}

// onItems handles an ITEMS frame: a stream gives its items to each and
// sends credit for more; a closing stream or a drain drops them; a call
// expects none. done: the loop ends (each stopped it).
func (p *process) onItems(ctx context.Context, fn string, l *replyLoop, st *streamItems, r reply) (done bool, err error) {
	switch l.wait {
	case waitDrain:
		return false, nil // items of a stream being cut off
	case waitCall:
		return false, p.unexpected(ctx, fn, l, r)
	}
	if r.id != l.id {
		return false, p.unexpected(ctx, fn, l, r)
	}
	if l.wait == waitClose {
		return false, nil
	}
	more, err := eachItem(r.value, st.codec, st.each)
	if err != nil {
		return false, p.lost(ctx, fn, l, err)
	}
	if !more {
		st.stopped = true
		return true, nil // the caller closes the stream
	}
	if st.consumed++; st.consumed == streamWindow/2 {
		st.consumed = 0
		if err := p.send(ctx, fn, p.creditFrame(l.id, streamWindow/2)); err != nil {
			return true, err
		}
	}
	return false, nil
}

// onReply handles the RESULT or ERROR that ends a call, which ends the loop.
// While draining, the reply of a nested call of the cut-off one is dropped.
func (p *process) onReply(ctx context.Context, fn string, l *replyLoop, r reply, owned bool) (done bool, err error) {
	if r.id != l.id {
		if l.wait == waitDrain && r.id > l.id {
			return false, nil // the reply of a nested call
		}
		return false, p.unexpected(ctx, fn, l, r)
	}
	switch l.wait {
	case waitCall:
		return true, p.replied(ctx, fn, r, owned, l.into)
	case waitStream:
		return true, p.replied(ctx, fn, r, owned, nil)
	case waitClose:
		// Closed: an exception raised by the generator's clean-up has no
		// one to go to any more.
		p.replied(ctx, fn, r, false, nil)
		return true, nil
	}
	p.setState(evDrained, nil)
	return true, nil
}

// unexpected is the protocol error of a message l does not wait for.
func (p *process) unexpected(ctx context.Context, fn string, l *replyLoop, r reply) error {
	var err error
	switch l.wait {
	case waitCall:
		err = fmt.Errorf("%w: message of kind %d for call %d while waiting for the reply to %d", ErrProtocol, r.kind, r.id, l.id)
	case waitStream:
		err = fmt.Errorf("%w: message of kind %d for call %d during the stream %d", ErrProtocol, r.kind, r.id, l.id)
	case waitClose:
		err = fmt.Errorf("%w: message of kind %d for call %d while closing the stream %d", ErrProtocol, r.kind, r.id, l.id)
	default:
		err = fmt.Errorf("%w: unexpected reply while draining", ErrProtocol)
	}
	return p.lost(ctx, fn, l, err)
}

// readFailed handles a failed read. A closing stream whose generator did
// not close in time (its limit, not ctx, ended the read) is interrupted,
// as a cut-off call, and the pool drains the worker.
func (p *process) readFailed(ctx context.Context, fn string, l *replyLoop, err error) error {
	if l.wait == waitClose && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		cause := fmt.Errorf("the generator did not close within Config.InterruptGrace (%v) after the loop ended", p.spec.interruptGrace)
		p.setState(evCutOff, cause)
		p.signal(syscall.SIGINT)
		return cause
	}
	return p.lost(ctx, fn, l, err)
}

// lost records that the exchange broke with err and returns the caller's
// error: a call's, stream's or closing stream's through failed; a drain's
// leaves the stream broken, for the pool to kill the worker.
func (p *process) lost(ctx context.Context, fn string, l *replyLoop, err error) error {
	if l.wait == waitDrain {
		p.setState(evLost, err)
		return err
	}
	return p.failed(ctx, fn, err, true)
}
