package pypool

import "fmt"

// Resize changes the pool's Size and MaxOverflow while it runs.
//
// Growing starts the missing workers at once (and serves waiting callers
// within the new Size+MaxOverflow). Shrinking stops idle workers beyond the
// new Size at once, longest idle first, and busy ones beyond the new
// Size+MaxOverflow as their callers check them in, even while other callers
// wait (the remaining workers serve them): it never interrupts a call, so
// until they come back the pool may run more workers than the new
// Size+MaxOverflow, and no worker is started until it runs fewer.
//
// size must be at least 1 and maxOverflow at least 0. After Close, Resize
// returns ErrPoolClosed.
func (p *Pool) Resize(size, maxOverflow int) error {
	if size < 1 || maxOverflow < 0 {
		return fmt.Errorf("pypool: Resize(%d, %d): the size must be at least 1 and the overflow at least 0", size, maxOverflow)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPoolClosed
	}
	if grown := size - p.cfg.Size; grown > 0 {
		p.owed[causeResize] += uint64(grown) // the starts reconcileLocked makes for it
	}
	p.cfg.Size, p.cfg.MaxOverflow = size, maxOverflow
	p.log.Info("pypool: resized", "size", size, "max_overflow", maxOverflow)
	p.shrinkIdleLocked()
	p.reconcileLocked()
	p.notifyLocked()
	return nil
}

// shrinkIdleLocked stops the idle workers beyond Size, longest idle first.
func (p *Pool) shrinkIdleLocked() {
	excess := p.readyLocked() - p.cfg.Size
	for _, pw := range p.idle.all() { // longest idle first
		if excess <= 0 {
			return
		}
		excess--
		p.log.Info("pypool: stopping a worker the resized pool does not need", "worker", pw.proc.pid, "size", p.cfg.Size)
		pw.stopCause = "the pool was resized"
		p.stopLocked(pw, causeResize)
	}
}
