package batcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Config holds the batching and delivery settings. The zero value of a
// field means its default, given beside it.
type Config struct {
	MaxRecords int           // flush at this many records; default 1000
	MaxBytes   int           // flush before a batch would pass this size; default 1 MiB
	Linger     time.Duration // flush once the oldest record waited this long; 0: never
	Delim      byte          // record delimiter; 0 is NUL, so set it

	// PerRecordOverhead is counted toward MaxBytes for every record on top
	// of its bytes, for sinks whose cost per record is more than its bytes
	// (command-line arguments).
	PerRecordOverhead int

	Parallel   int           // batches delivered at once; default 1
	Retries    int           // attempts after the first; 0: none
	Backoff    time.Duration // first retry waits up to this; 0: retries at once
	MaxBackoff time.Duration // no retry waits longer; 0: retries at once

	// ShutdownTimeout bounds the drain after Stop; then deliveries in
	// flight are abandoned. 0: no bound.
	ShutdownTimeout time.Duration

	// DeadLetter keeps batches that cannot be delivered. Without one, the
	// first such batch stops the run.
	DeadLetter DeadLetter

	// Logger gets a warning per retry and dead letter and, at debug level,
	// a line per batch. Default: silent.
	Logger *slog.Logger

	// OnSettled, if set, is called once per batch when its fate is known.
	OnSettled func(Settlement)

	// Key, if set, gives each record a key, appended to dst, and batches
	// records by key: each key has a batch open of its own, flushed by
	// MaxRecords, MaxBytes and Linger (from its own oldest record) alone.
	// A record whose key cannot be found (the error) is dead-lettered on
	// its own, or counted undelivered, never put in a batch of a guessed
	// key. Order within a key is kept: with Parallel above 1, a key's
	// batch is delivered only once the one before it is settled (see
	// keyTurns). Stream blocks are split into
	// records for it, which costs more than an unkeyed run.
	Key func(dst []byte, r *Record) ([]byte, error)
	// MaxOpenKeys bounds the batches open at once with Key: a record of a
	// new key past it flushes the batch with the oldest record first.
	// Default 1000.
	MaxOpenKeys int
	// MaxBufferedBytes bounds the bytes held in all open batches with Key:
	// past it, the largest batch is flushed. Default 64 MiB.
	MaxBufferedBytes int

	// Plan, if set with Key, is called with every batch that Key formed,
	// before it is queued, so that the source can store its cut (exactly
	// once). Batches of records whose Meta.PlanEnd says they were planned
	// before are not passed again. An error wrapping ErrNotOwned gives the
	// records back (Stats.Withdrawn); another fails the batch.
	Plan func(b *Batch) error
}

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

// Validate reports settings that make no sense.
func (c *Config) Validate() error {
	switch {
	case c.MaxRecords < 0:
		return fmt.Errorf("max records must be at least 1, not %d", c.MaxRecords)
	case c.MaxBytes < 0:
		return fmt.Errorf("max bytes must be positive, not %d", c.MaxBytes)
	case c.Linger < 0:
		return fmt.Errorf("linger must not be negative, not %v", c.Linger)
	case c.Parallel < 0:
		return fmt.Errorf("parallel must be at least 1, not %d", c.Parallel)
	case c.Retries < 0:
		return fmt.Errorf("retries must not be negative, not %d", c.Retries)
	case c.Backoff < 0 || c.MaxBackoff < 0:
		return errors.New("backoff must not be negative")
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown timeout must not be negative, not %v", c.ShutdownTimeout)
	case c.MaxOpenKeys < 0:
		return fmt.Errorf("max open keys must be at least 1, not %d", c.MaxOpenKeys)
	case c.MaxBufferedBytes < 0:
		return fmt.Errorf("max buffered bytes must be positive, not %d", c.MaxBufferedBytes)
	case c.Plan != nil && c.Key == nil:
		return errors.New("a plan hook needs a key")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxRecords == 0 {
		c.MaxRecords = 1000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 20
	}
	if c.Parallel == 0 {
		c.Parallel = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxOpenKeys == 0 {
		c.MaxOpenKeys = DefaultMaxOpenKeys
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	return c
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
	now := time.Now()
	p.c.start.Store(&now)
	p.failed = make(chan struct{})
	p.failSeq.Store(math.MaxInt64)
	pool := cfg.Parallel + 2
	if cfg.Key != nil {
		// Room for the open batches too, as many as the buffered bytes
		// bound lets be full: each key's batch then grows once.
		pool += min(cfg.MaxOpenKeys, cfg.MaxBufferedBytes/cfg.MaxBytes)
	}
	p.free = make(chan *Batch, pool)

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
	var workers sync.WaitGroup
	var turns *keyTurns
	if cfg.Key != nil && cfg.Parallel > 1 {
		// (One worker delivers a key's batches in order by itself.)
		var stop func() bool
		turns, stop = newKeyTurns(dctx, cfg.Parallel)
		defer stop()
	}
	for range cfg.Parallel {
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

	a := aggregator{p: p, cfg: &cfg, queue: queue, ctx: dctx,
		debug: cfg.Logger.Enabled(ctx, slog.LevelDebug), pos: Pos{Record: 1}}
	a.timer = time.NewTimer(time.Hour)
	a.timer.Stop()
	defer a.timer.Stop()
	if cfg.Key != nil {
		a.keyed = newKeyedState()
	}

	// The shutdown timeout runs from the stop, even while the aggregator
	// waits for room in the queue and cannot see it.
	drained := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-p.Stop:
		case <-drained:
			return
		}
		stopSource()
		if cfg.ShutdownTimeout <= 0 {
			return
		}
		t := time.NewTimer(cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			abandon(ErrShutdownTimeout)
		case <-drained:
		}
	})

	in, stop, failed, done := chunks, p.Stop, p.failed, ctx.Done()
	stopping := false
	for in != nil {
		// Keyed batches flushed while the queue was full go as it empties.
		var feed chan<- *Batch
		var next *Batch
		if a.keyed != nil && a.keyed.waits() {
			feed, next = queue, a.keyed.waiting[a.keyed.head].b
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
				cfg.Logger.Debug("read", "records", a.pos.Record-before, "total", a.pos.Record-1)
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
	readErr := <-srcErr
	if errors.Is(readErr, context.Canceled) && sctx.Err() != nil {
		readErr = nil // we stopped it
	}
	switch {
	case stopping:
		a.flush(ReasonSignal)
	default:
		a.flush(ReasonEOF)
	}
	for a.keyed != nil && a.keyed.waits() {
		a.enqueue(a.keyed.popWaiting())
	}
	close(queue)
	stuck := p.waitWorkers(dctx, &workers)
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

	var errs []error
	if l, ok := p.Source.(Locator); (!ok || !l.LocatesErrors()) && st.Undelivered > 0 {
		if pos := p.firstLost(); pos.Record > 0 {
			errs = append(errs, fmt.Errorf("first record not delivered: %s; a run resumed from there loses nothing", pos))
		}
	}
	if err := p.firstError(); err != nil {
		errs = append(errs, err)
	}
	if cause := context.Cause(dctx); cause != nil && st.Undelivered > 0 {
		// (Deliveries abandoned that ended delivered after all lost nothing.)
		errs = append(errs, fmt.Errorf("deliveries abandoned: %w", cause))
	}
	if readErr != nil {
		if l, ok := p.Source.(Locator); ok && l.LocatesErrors() {
			errs = append(errs, fmt.Errorf("read: %w", readErr))
		} else {
			errs = append(errs, fmt.Errorf("read, at byte offset %d (record %d): %w", a.pos.Offset, a.pos.Record, readErr))
		}
	}
	if closeErr != nil {
		errs = append(errs, closeErr)
	}
	return st, errors.Join(errs...)
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

// aggregator owns the open batch. Only the Run goroutine touches it.
type aggregator struct {
	p     *Pipeline
	cfg   *Config
	queue chan<- *Batch
	ctx   context.Context // deliveries; done when abandoned
	timer *time.Timer
	debug bool // log every chunk read

	open   *Batch
	seq    int64
	pos    Pos // position of the next record
	weight int // open batch's bytes plus per-record overhead

	keyed *keyedState // with Config.Key; open is unused then
}

// addChunk adds a chunk's records. The read counters are bumped per chunk,
// or per batch within a block, before the records can be flushed: atomics
// per record would cost more than the rest of the work together.
func (a *aggregator) addChunk(recs []Record) {
	n, size := 0, 0
	for i := range recs {
		if !recs[i].Block {
			n++
			size += len(recs[i].Data) + 1
		}
	}
	a.p.c.read.Add(int64(n))
	a.p.c.bytesRead.Add(int64(size))
	if a.keyed != nil {
		for i := range recs {
			if recs[i].Block {
				a.addKeyedBlock(recs[i].Data)
			} else {
				a.addKeyed(&recs[i])
			}
		}
		return
	}
	for i := range recs {
		if recs[i].Block {
			a.addBlock(recs[i].Data)
		} else {
			a.add(&recs[i])
		}
	}
}

// addBlock adds the records of a block: it finds each one's end, starts and
// flushes batches where add would, and copies each batch's share of the
// block in one go. The block already has the batch's layout, records each
// followed by the delimiter, so a batch's records are one run of it.
func (a *aggregator) addBlock(data []byte) {
	a.p.c.bytesRead.Add(int64(len(data)))
	delim, over := a.cfg.Delim, a.cfg.PerRecordOverhead
	maxRecords, maxBytes := a.cfg.MaxRecords, a.cfg.MaxBytes
	var b *Batch
	// data[run:off] goes to the end of b.buf, at base+run: a record ending
	// at data[i] ends at b.buf[base+i].
	run, base, off := 0, 0, 0
	var counted int64 // records not yet added to the read counter
	for off < len(data) {
		if b == nil {
			if a.open == nil {
				a.open = a.p.get(delim)
			}
			b, run = a.open, off
			base = len(b.buf) - off
		}
		i := bytes.IndexByte(data[off:], delim)
		if i < 0 {
			panic("batcher: a block's last record has no delimiter")
		}
		size := i + 1
		w := size + over
		if len(b.ends) > 0 && a.weight+w > maxBytes {
			a.flushPart(b, data[run:off], counted, ReasonBytes)
			b, counted = nil, 0
			continue
		}
		if len(b.ends) == 0 {
			b.First = a.pos
			if a.cfg.Linger > 0 {
				a.timer.Reset(a.cfg.Linger)
			}
		}
		off += size
		b.ends = append(b.ends, base+off-1)
		if b.meta != nil {
			b.meta = append(b.meta, nil)
		}
		a.weight += w
		a.pos.Record++
		a.pos.Offset += int64(size)
		counted++
		switch {
		case len(b.ends) >= maxRecords:
			a.flushPart(b, data[run:off], counted, ReasonSize)
			b, counted = nil, 0
		case a.weight+1+over > maxBytes:
			a.flushPart(b, data[run:off], counted, ReasonBytes)
			b, counted = nil, 0
		}
	}
	if b != nil {
		b.buf = append(b.buf, data[run:off]...)
	}
	a.p.c.read.Add(counted)
}

// flushPart copies the open batch's share of a block into it, counts its
// records read and flushes it.
func (a *aggregator) flushPart(b *Batch, part []byte, counted int64, why Reason) {
	b.buf = append(b.buf, part...)
	a.p.c.read.Add(counted)
	a.flush(why)
}

// next moves the input position past r and returns where r began and its
// size with its delimiter. A record the source could not take whole is
// rejected there, and ok is false.
func (a *aggregator) next(r *Record) (pos Pos, size int, ok bool) {
	size = len(r.Data) + 1
	pos = a.pos
	a.pos.Record++
	if r.Err != nil {
		var tl *TooLargeError
		if errors.As(r.Err, &tl) {
			a.p.c.bytesRead.Add(tl.Size - int64(len(r.Data)))
			size = int(tl.Size) + 1
		}
		a.pos.Offset += int64(size)
		a.p.reject(a.ctx, pos, r.Err)
		return pos, size, false
	}
	a.pos.Offset += int64(size)
	return pos, size, true
}

func (a *aggregator) add(r *Record) {
	pos, size, ok := a.next(r)
	if !ok {
		return
	}
	w := size + a.cfg.PerRecordOverhead
	if a.open != nil && a.open.Len() > 0 && a.weight+w > a.cfg.MaxBytes {
		a.flush(ReasonBytes)
	}
	if a.open == nil {
		a.open = a.p.get(a.cfg.Delim)
	}
	b := a.open
	if b.Len() == 0 {
		b.First = pos
		if a.cfg.Linger > 0 {
			a.timer.Reset(a.cfg.Linger)
		}
	}
	b.add(r)
	a.weight += w
	switch {
	case b.Len() >= a.cfg.MaxRecords:
		a.flush(ReasonSize)
	case a.weight+1+a.cfg.PerRecordOverhead > a.cfg.MaxBytes:
		// Not even an empty record fits: waiting would gain nothing.
		a.flush(ReasonBytes)
	}
}

// flush hands the open batch to the workers, waiting while the queue is
// full: that wait is the backpressure that pauses reading.
func (a *aggregator) flush(why Reason) {
	if a.keyed != nil {
		a.flushAll(why)
		return
	}
	b := a.open
	if b == nil || b.Len() == 0 {
		return
	}
	a.open = nil
	a.weight = 0
	a.timer.Stop()
	a.send(b, why)
}

// send numbers b and queues it for delivery.
func (a *aggregator) send(b *Batch, why Reason) {
	a.number(b, why)
	a.enqueue(b)
}

// number numbers b and counts it flushed.
func (a *aggregator) number(b *Batch, why Reason) {
	a.seq++
	b.Seq, b.Reason = a.seq, why
	if s, ok := b.Span(); ok {
		b.ID = s.ID()
	}
	p := a.p
	n := int64(b.Len())
	p.c.batches.Add(1)
	p.c.reasons[why].Add(1)
	p.c.inFlight.Add(n)
}

// enqueue hands b to the workers, waiting while the queue is full: that
// wait is the backpressure that pauses reading.
func (a *aggregator) enqueue(b *Batch) {
	p := a.p
	select {
	case a.queue <- b:
	case <-p.failed:
		p.settle(b, Abandoned, 0, errors.New("not attempted: an earlier batch failed"), b.Len())
		p.release(b)
	case <-a.ctx.Done():
		p.settle(b, Abandoned, 0, context.Cause(a.ctx), b.Len())
		p.release(b)
	}
}

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
