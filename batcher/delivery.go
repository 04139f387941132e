// Delivery: a worker's attempts at one batch, its retries, dead letters,
// and how each batch is settled.

package batcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// ErrNotOwned says the records of a batch are no longer this run's to
// deliver: their Kafka partition went to another group member, who reads
// them again.
var ErrNotOwned = errors.New("records no longer owned")

// A Settlement is the fate of one batch.
type Settlement struct {
	Batch    *Batch // valid only during the call
	Outcome  Outcome
	Duration time.Duration // from the first attempt to the last
	Err      error
}

// Outcome is how a batch ended.
type Outcome uint8

const (
	Delivered    Outcome = iota // every record delivered
	Partial                     // delivered except records dead-lettered
	DeadLettered                // written to the dead letter
	Failed                      // not delivered (some records may be dead-lettered)
	Abandoned                   // the run stopped before it could be delivered
	Withdrawn                   // the source took every record back (see Withdrawer)
)

func (o Outcome) String() string {
	return [...]string{"delivered", "partial", "dead-lettered", "failed", "abandoned", "withdrawn"}[o]
}

// ErrShutdownTimeout is the cause of deliveries abandoned when the drain
// after Stop took longer than Config.ShutdownTimeout.
var ErrShutdownTimeout = errors.New("shutdown timeout passed")

// A DeliveryError is the first batch that could be neither delivered nor
// dead-lettered; it stopped the run.
type DeliveryError struct {
	Batch string // which batch and where its records are
	Err   error
}

func (e *DeliveryError) Error() string { return e.Batch + ": " + e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// deliverKeyed is a worker's loop with keys: it takes batches from queue
// as turns lets it, and delivers each key's batches set aside after the
// one it delivered.
func (p *Pipeline) deliverKeyed(ctx context.Context, queue <-chan *Batch, turns *keyTurns) {
	for {
		b := turns.take(queue)
		if b == nil {
			return
		}
		for b != nil {
			key := b.Key
			p.handle(ctx, b)
			p.release(b)
			b = turns.next(key)
		}
	}
}

// handle delivers one batch, with retries, and settles it.
func (p *Pipeline) handle(ctx context.Context, b *Batch) {
	// A batch flushed before the failed one still goes: a worker may take
	// it and start it only after a later one failed.
	if p.isFailed() && b.Seq > p.failSeq.Load() {
		p.settle(b, Abandoned, 0, errors.New("not attempted: an earlier batch failed"), b.Len())
		return
	}
	if ctx.Err() != nil {
		p.settle(b, Abandoned, 0, context.Cause(ctx), b.Len())
		return
	}
	if w, ok := p.Source.(Withdrawer); ok {
		defer w.Settled(b.Seq)
	}
	start := time.Now()
	left, err := p.deliver(ctx, b)
	took := time.Since(start)
	switch {
	case err == nil:
		p.settle(b, Delivered, took, nil, 0)
	case err == errWithdrawn:
		p.settle(b, Withdrawn, took, nil, 0)
	case ctx.Err() != nil:
		p.settle(b, Abandoned, took, fmt.Errorf("%w (last error: %v)", context.Cause(ctx), err), left.Len())
	case !p.withdraw(b, left):
		p.settle(b, Withdrawn, took, nil, 0)
	case !IsFatal(err) && p.deadLetter(ctx, left, err):
		if left.Len() < b.Len() {
			p.settle(b, Partial, took, err, left.Len())
		} else {
			p.settle(b, DeadLettered, took, err, left.Len())
		}
	default:
		p.fail(b.Seq, left.String(), err)
		p.noteLost(left.First)
		p.settle(b, Failed, took, err, left.Len())
	}
}

// deliver makes up to 1+Retries attempts, with exponential backoff and full
// jitter between them. An attempt that delivers part of the batch leaves
// the rest to the next. It returns the last attempt's error and the records
// it left undelivered.
func (p *Pipeline) deliver(ctx context.Context, whole *Batch) (*Batch, error) {
	var wait *time.Timer
	b := whole
	for attempt := 1; ; attempt++ {
		if !p.withdraw(whole, b) {
			return nil, errWithdrawn
		}
		whole.Attempt, b.Attempt = attempt, attempt
		err := p.Sink.Deliver(ctx, b)
		if err == nil {
			return nil, nil
		}
		var rej *RejectError
		isRej := errors.As(err, &rej)
		if isRej {
			b = b.Pick(rej.indexes())
		}
		if IsPermanent(err) || isRej && !rej.again() || attempt > p.Retries || ctx.Err() != nil {
			return b, err
		}
		d := p.backoff(attempt)
		if hint, ok := retryAfterHint(err); ok {
			d = min(hint, p.MaxBackoff)
		}
		p.Logger.Warn("retrying", "batch", b.String(), "attempt", attempt, "wait", d, "err", err)
		p.c.retries.Add(1)
		if wait == nil {
			wait = time.NewTimer(d)
			defer wait.Stop()
		} else {
			wait.Reset(d)
		}
		select {
		case <-wait.C:
		case <-ctx.Done():
			return b, err
		}
	}
}

// errWithdrawn is deliver's error when the source took back every record.
var errWithdrawn = errors.New("withdrawn by the source")

// withdraw takes out of whole the records the source takes back, and out
// of cur (whole, or the records of it still to deliver) too, and counts
// them. It reports whether cur has records left.
func (p *Pipeline) withdraw(whole, cur *Batch) bool {
	w, ok := p.Source.(Withdrawer)
	if !ok {
		return cur.Len() > 0
	}
	idx := w.Withdraw(whole)
	if len(idx) == 0 {
		return cur.Len() > 0
	}
	p.Logger.Debug("withdrawn", "batch", whole.String(), "records", len(idx))
	if cur != whole {
		gone := make(map[*Meta]bool, len(idx))
		for _, i := range idx {
			gone[whole.Meta(i)] = true
		}
		var in []int
		for i := range cur.Len() {
			if gone[cur.Meta(i)] {
				in = append(in, i)
			}
		}
		cur.drop(in)
	}
	whole.drop(idx)
	n := int64(len(idx))
	p.c.withdrawn.Add(n)
	p.c.inFlight.Add(-n)
	return cur.Len() > 0
}

// backoff is the wait before retry n (from 1): uniform in
// [0, min(MaxBackoff, Backoff×2^(n-1))].
func (p *Pipeline) backoff(n int) time.Duration {
	d := p.MaxBackoff
	if n < 32 && p.Backoff<<(n-1) < d && p.Backoff<<(n-1) > 0 {
		d = p.Backoff << (n - 1)
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// deadLetter writes b to the dead letter, if there is one, and counts it.
func (p *Pipeline) deadLetter(ctx context.Context, b *Batch, reason error) bool {
	if p.DeadLetter == nil {
		return false
	}
	if err := p.DeadLetter.Write(ctx, b, reason); err != nil {
		p.Logger.Error("dead letter", "batch", b.String(), "err", err)
		return false
	}
	if b.ID != "" {
		p.Logger.Warn("dead-lettered", "batch", b.String(), "batch_id", b.ID, "records", b.Len(), "reason", reason)
	} else {
		p.Logger.Warn("dead-lettered", "batch", b.String(), "records", b.Len(), "reason", reason)
	}
	p.c.deadLettered.Add(int64(b.Len()))
	return true
}

// reject counts a record the source could not take whole: one over the
// size limit, or cut short by the end of the run. Its neighbours are
// delivered all the same; the run goes on and ends non-zero.
func (p *Pipeline) reject(ctx context.Context, pos Pos, err error) {
	var tl *TooLargeError
	if errors.As(err, &tl) && tl.Body != nil {
		defer tl.Body.Close()
		if dl, ok := p.DeadLetter.(RecordDeadLetter); ok {
			werr := dl.WriteRecord(ctx, tl.Body, p.Delim)
			if werr == nil {
				p.Logger.Warn("dead-lettered", "record", pos.String(), "reason", err)
				p.c.deadLettered.Add(1)
				return
			}
			p.Logger.Error("dead letter", "record", pos.String(), "err", werr)
		}
	}
	p.c.undelivered.Add(1)
	p.noteLost(pos)
	if !(errors.Is(err, ErrCutShort) && p.isFailed()) {
		// (A run that failed, which cut the input short, says why itself.)
		p.Logger.Error("record not delivered", "record", pos.String(), "err", err)
	}
	p.noteFailure(pos.String(), err)
}

// noteLost keeps the position of the first record not delivered, so that
// the error can say where a resumed run must start.
func (p *Pipeline) noteLost(pos Pos) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lost.Record == 0 || pos.Record < p.lost.Record {
		p.lost = pos
	}
}

func (p *Pipeline) firstLost() Pos {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// fail records a failure and stops reading. Batches after seq, the failed
// batch (0 for none), are abandoned; those before it are delivered.
func (p *Pipeline) fail(seq int64, where string, err error) {
	p.noteFailure(where, err)
	for {
		cur := p.failSeq.Load()
		if seq >= cur || p.failSeq.CompareAndSwap(cur, seq) {
			break
		}
	}
	p.failOnce.Do(func() { close(p.failed) })
}

// noteFailure keeps the first failure for Run's error.
func (p *Pipeline) noteFailure(where string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstErr == nil {
		p.firstErr = &DeliveryError{Batch: where, Err: err}
	}
}

func (p *Pipeline) firstError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstErr
}

func (p *Pipeline) isFailed() bool {
	select {
	case <-p.failed:
		return true
	default:
		return false
	}
}

// settle counts b's records by outcome, tells the source and the sink, and
// logs the batch.
func (p *Pipeline) settle(b *Batch, o Outcome, took time.Duration, err error, left int) {
	n := int64(b.Len())
	p.c.inFlight.Add(-n)
	// Of the records left undelivered, dead-lettered ones were counted
	// when written.
	p.c.delivered.Add(n - int64(left))
	switch o {
	case Delivered:
		p.c.batchesDone.Add(1)
		p.c.bytesDelivered.Add(int64(b.Size()))
	case Failed, Abandoned:
		p.c.undelivered.Add(int64(left))
		if o == Abandoned && left > 0 {
			p.noteLost(b.First)
		}
	}
	if o != Delivered && left < b.Len() {
		p.c.batchesPartly.Add(1)
	}
	// A withdrawn batch may keep records delivered by an earlier attempt.
	if o == Delivered || o == Partial || o == DeadLettered || o == Withdrawn {
		if a, ok := p.Source.(Acker); ok {
			a.Ack(b)
		}
	}
	p.notify(b, o, took, err)
}

func (p *Pipeline) notify(b *Batch, o Outcome, took time.Duration, err error) {
	if s, ok := p.Sink.(Settler); ok {
		s.Settled(b.Seq)
	}
	if p.OnSettled != nil {
		p.OnSettled(Settlement{Batch: b, Outcome: o, Duration: took, Err: err})
	}
	if p.Logger.Enabled(context.Background(), slog.LevelDebug) {
		p.Logger.Debug("batch", "seq", b.Seq, "records", b.Len(), "bytes", b.Size(),
			"reason", b.Reason.String(), "attempts", b.Attempt, "duration", took, "outcome", o.String(), "err", err)
	}
}
