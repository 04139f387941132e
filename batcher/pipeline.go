package batcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// A Pipeline reads records from Source, batches them and delivers the
// batches to Sink. A Pipeline runs once.
type Pipeline struct {
	Source Source
	Sink   Sink
	Config

	// Stop, when closed, stops reading: the open batch is flushed and
	// everything read is delivered before Run returns (the first SIGTERM).
	Stop <-chan struct{}
	// Flush flushes the open batch on every receive (SIGUSR1).
	Flush <-chan struct{}

	c        counters
	failOnce sync.Once
	failed   chan struct{} // closed on the first undeliverable batch
	failSeq  atomic.Int64  // the first failed batch: later ones are not attempted
	mu       sync.Mutex
	firstErr error       // the first record or batch not delivered
	lost     Pos         // the first record not delivered, by position; Record 0: none
	free     chan *Batch // recycled batches
}

// Stats returns the counters so far; it may be called while Run runs.
func (p *Pipeline) Stats() Stats { return p.c.snapshot() }

// Run runs the pipeline until input ends or Stop is closed and everything
// read is delivered, dead-lettered or known to be undelivered. Cancelling ctx
// abandons deliveries in flight at once.
//
// The error is the first delivery failure, the source's read error, or why
// deliveries were abandoned; Stats says how many records each left behind.
func (p *Pipeline) Run(ctx context.Context) (Stats, error) {
	cfg := p.Config.withDefaults()
	p.Config = cfg
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	p.init()

	dctx, abandon := context.WithCancelCause(ctx)
	defer abandon(nil)
	sctx, stopSource := context.WithCancel(ctx)
	defer stopSource()

	chunks := make(chan []Record)
	srcErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		srcErr <- p.Source.Run(sctx, chunks)
	}()

	// One batch in the queue and one open at the aggregator bound memory to
	// (Parallel+2) batches.
	queue := make(chan *Batch, 1)
	workers, stopTurns := p.startWorkers(dctx, queue)
	defer stopTurns()

	a := aggregator{p: p, cfg: &cfg, queue: queue, ctx: dctx,
		debug: cfg.Logger.Enabled(ctx, slog.LevelDebug), pos: Pos{Record: 1}}
	a.timer = time.NewTimer(time.Hour)
	a.timer.Stop()
	defer a.timer.Stop()
	if cfg.Key != nil {
		a.keyed = newKeyedState()
	}

	drained := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() { p.watchStop(drained, stopSource, abandon) })

	stopping := a.loop(ctx, chunks, stopSource)
	readErr := <-srcErr
	if errors.Is(readErr, context.Canceled) && sctx.Err() != nil {
		readErr = nil // we stopped it
	}
	if stopping {
		a.flush(ReasonSignal)
	} else {
		a.flush(ReasonEOF)
	}
	for a.keyed != nil && a.keyed.waits() {
		a.enqueue(a.keyed.popWaiting())
	}
	close(queue)
	stuck := p.waitWorkers(dctx, workers)
	close(drained)
	watch.Wait()

	var closeErr error
	if c, ok := p.Sink.(Closer); ok && !stuck {
		closeErr = c.Close()
	}
	st := p.c.snapshot()
	if stuck {
		// Deliveries still running are given up: count them as such.
		st.Undelivered += st.InFlight
		st.InFlight = 0
	}
	return st, p.runError(st, context.Cause(dctx), readErr, a.pos, closeErr)
}

// init readies the run's state: its start, the failure signal and the pool
// of batches.
func (p *Pipeline) init() {
	now := time.Now()
	p.c.start.Store(&now)
	p.failed = make(chan struct{})
	p.failSeq.Store(math.MaxInt64)
	pool := p.Parallel + 2
	if p.Key != nil {
		// Room for the open batches too, as many as the buffered bytes
		// bound lets be full: each key's batch then grows once.
		pool += min(p.MaxOpenKeys, p.MaxBufferedBytes/p.MaxBytes)
	}
	p.free = make(chan *Batch, pool)
}

// startWorkers starts the Parallel workers that deliver what comes on
// queue, keyed batches in their key's turn; stop ends the turns.
func (p *Pipeline) startWorkers(dctx context.Context, queue <-chan *Batch) (workers *sync.WaitGroup, stop func() bool) {
	workers = new(sync.WaitGroup)
	stop = func() bool { return false }
	var turns *keyTurns
	if p.Key != nil && p.Parallel > 1 {
		// (One worker delivers a key's batches in order by itself.)
		turns, stop = newKeyTurns(dctx, p.Parallel)
	}
	for range p.Parallel {
		workers.Go(func() {
			if turns != nil {
				p.deliverKeyed(dctx, queue, turns)
				return
			}
			for b := range queue {
				p.handle(dctx, b)
				p.release(b)
			}
		})
	}
	return workers, stop
}

// watchStop stops the source on Stop, and abandons deliveries once the
// shutdown timeout has run from there without the run being drained. It
// runs beside the aggregator, which may wait for room in the queue and
// not see the stop.
func (p *Pipeline) watchStop(drained <-chan struct{}, stopSource func(), abandon context.CancelCauseFunc) {
	select {
	case <-p.Stop:
	case <-drained:
		return
	}
	stopSource()
	if p.ShutdownTimeout <= 0 {
		return
	}
	t := time.NewTimer(p.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-t.C:
		abandon(ErrShutdownTimeout)
	case <-drained:
	}
}

// loop feeds the aggregator until the input ends: chunks read, the linger
// timer, flushes; a stop, a failed batch or ctx's end stop the source,
// which then ends the input. It reports whether a stop ended it.
func (a *aggregator) loop(ctx context.Context, chunks <-chan []Record, stopSource func()) (stopping bool) {
	p := a.p
	in, stop, failed, done := chunks, p.Stop, p.failed, ctx.Done()
	for in != nil {
		// Keyed batches flushed while the queue was full go as it empties.
		var feed chan<- *Batch
		var next *Batch
		if a.keyed != nil && a.keyed.waits() {
			feed, next = a.queue, a.keyed.waiting[a.keyed.head].b
		}
		select {
		case feed <- next:
			a.keyed.popWaiting()
		case recs, ok := <-in:
			if !ok {
				in = nil
				break
			}
			before := a.pos.Record
			a.addChunk(recs)
			if a.debug {
				a.cfg.Logger.Debug("read", "records", a.pos.Record-before, "total", a.pos.Record-1)
			}
		case <-a.timer.C:
			if a.keyed != nil {
				a.lingered()
			} else {
				a.flush(ReasonLinger)
			}
		case <-p.Flush:
			a.flush(ReasonFlush)
		case <-stop:
			stop, stopping = nil, true
		case <-failed:
			failed = nil
			stopSource()
		case <-done:
			done = nil
			stopSource()
		}
	}
	if !stopping {
		// The stop may have ended the input before the loop saw it.
		select {
		case <-p.Stop:
			stopping = true
		default:
		}
	}
	return stopping
}

// runError joins what Run has to say about a run that left records behind:
// where the first one was, the first failure, why deliveries were
// abandoned (cause), the read error at pos, and the sink's close error.
func (p *Pipeline) runError(st Stats, cause, readErr error, pos Pos, closeErr error) error {
	var errs []error
	l, ok := p.Source.(Locator)
	locates := ok && l.LocatesErrors()
	if !locates && st.Undelivered > 0 {
		if lost := p.firstLost(); lost.Record > 0 {
			errs = append(errs, fmt.Errorf("first record not delivered: %s; a run resumed from there loses nothing", lost))
		}
	}
	if err := p.firstError(); err != nil {
		errs = append(errs, err)
	}
	if cause != nil && st.Undelivered > 0 {
		// (Deliveries abandoned that ended delivered after all lost nothing.)
		errs = append(errs, fmt.Errorf("deliveries abandoned: %w", cause))
	}
	if readErr != nil {
		if locates {
			errs = append(errs, fmt.Errorf("read: %w", readErr))
		} else {
			errs = append(errs, fmt.Errorf("read, at byte offset %d (record %d): %w", pos.Offset, pos.Record, readErr))
		}
	}
	if closeErr != nil {
		errs = append(errs, closeErr)
	}
	return errors.Join(errs...)
}

// abandonGrace is how long Run waits, once deliveries are abandoned, for a
// sink to notice, on top of what an Abandoner asks for. A sink stuck in a
// system call (a write to a pipe nobody reads) is then left behind, so that
// the run ends by --shutdown-timeout, and at once after a second signal.
const abandonGrace = 200 * time.Millisecond

// waitWorkers waits for the workers to finish, or, once deliveries are
// abandoned, for abandonGrace and the grace the sink asks for, after which
// the sink's Kill ends what it started; it reports whether some deliveries
// were still running.
func (p *Pipeline) waitWorkers(dctx context.Context, workers *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return false
	case <-dctx.Done():
	}
	d := abandonGrace
	ab, _ := p.Sink.(Abandoner)
	if ab != nil {
		d += ab.AbandonGrace(context.Cause(dctx))
	}
	grace := time.NewTimer(d)
	defer grace.Stop()
	select {
	case <-done:
		return false
	case <-grace.C:
		if ab != nil {
			ab.Kill()
		}
		return true
	}
}

// get returns an empty batch, recycled when one is free.
func (p *Pipeline) get(delim byte) *Batch {
	select {
	case b := <-p.free:
		b.Delim = delim
		return b
	default:
		// Sized for a full batch up front: grown by append, it would end
		// up to a quarter larger than MaxBytes, and leave garbage behind.
		return &Batch{Delim: delim, buf: make([]byte, 0, min(p.MaxBytes, 8<<20))}
	}
}

// release recycles b unless a huge record left it much larger than a
// batch should be.
func (p *Pipeline) release(b *Batch) {
	if cap(b.buf) > 2*p.MaxBytes {
		return
	}
	b.reset()
	select {
	case p.free <- b:
	default:
	}
}
