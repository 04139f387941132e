// The aggregator: records in, batches out, cut by count, bytes, linger
// time and key.

package batcher

import (
	"bytes"
	"context"
	"errors"
	"time"
)

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
