package batcher

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"time"
)

// Defaults of the bounds on keyed batching.
const (
	DefaultMaxOpenKeys      = 1000
	DefaultMaxBufferedBytes = 64 << 20
)

// keyedState holds the open batches of a run with Config.Key: one per key.
// One timer serves them all, set for the batch with the oldest record, the
// top of byAge: batches are opened in arrival order and Linger is the same
// for all, so the oldest record is also the earliest deadline.
type keyedState struct {
	open     map[string]*keyedBatch
	byAge    ageHeap // batches the limits may flush, oldest record on top
	buffered int     // bytes held in all open batches
	reused   int     // capacity open batches' buffers had when taken
	arrivals int64   // batches opened so far: orders them by age
	// full and fullRecs are the bytes and records of the last batch the
	// limits flushed: a new buffer is made that large, not grown to it.
	full, fullRecs int
	// waiting holds, from head, batches flushed while the queue was full,
	// in flush order; waited counts their bytes and reused their buffers'
	// capacity until they go. They are not in buffered: which batch
	// MaxBufferedBytes flushes depends on the input alone, not on how fast
	// the workers took the others.
	waiting []waitingBatch
	head    int
	waited  int // bytes in waiting batches

	kbuf []byte // the key being found
	rec  Record // a block's record being added: one, not one per record

	// recent caches open batches by a hash of their key, so that most
	// records find their batch without hashing the key the map's way. It
	// holds only open batches: closeKeyed clears a batch's slot.
	recent [1 << recentBits]*keyedBatch
}

const recentBits = 8 // recent has 1<<recentBits slots

// keyHash sums up a key for recent: its length and first and last 8
// bytes, cheap to take, and where keys differ. A key shorter than 8 bytes
// is its own sum: equal sums, equal keys.
func keyHash(key []byte) uint64 {
	n := len(key)
	if n >= 8 {
		return binary.LittleEndian.Uint64(key) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(key[n-8:]), 29) ^ uint64(n)
	}
	var h uint64
	for _, c := range key {
		h = h<<8 | uint64(c)
	}
	return h | uint64(n)<<56 // the bytes take 56 bits at most
}

// slot is where the batch of a key of sum h may be in recent. Keys that
// share a slot only cost a map lookup.
func slot(h uint64) uint32 { return uint32((h * 0x9e3779b97f4a7c15) >> (64 - recentBits)) }

// find returns the open batch of key, whose sum is h, or nil. A []byte
// key converted in a comparison or map index does not allocate.
func (k *keyedState) find(key []byte, h uint64) *keyedBatch {
	s := slot(h)
	if o := k.recent[s]; o != nil && o.hash == h && (len(key) < 8 || o.key == string(key)) {
		return o
	}
	o := k.open[string(key)]
	if o != nil {
		k.recent[s] = o
	}
	return o
}

func newKeyedState() *keyedState {
	return &keyedState{open: make(map[string]*keyedBatch)}
}

// A keyedBatch is the open batch of one key.
type keyedBatch struct {
	key    string
	b      *Batch
	weight int       // bytes plus per-record overhead, as MaxBytes counts
	first  int64     // arrival number: lower is older
	since  time.Time // when its first record came, with Linger
	plan   int64     // its records' Meta.PlanEnd; 0: cut by the limits
	assign int64     // its records' Meta.Assignment
	reused int       // capacity its buffer was taken with (getKeyed), or 0
	last   int64     // offset of its last record; -1 before one
	idx    int       // in byAge; -1 for a planned batch, which no limit flushes
	hash   uint64    // keyHash(key)
}

// A waitingBatch is a flushed batch waiting for room in the queue.
type waitingBatch struct {
	b      *Batch
	size   int // b.Size(), which is not b's to read once queued
	reused int // capacity its buffer was taken with (getKeyed), or 0
}

// waits reports whether a flushed batch waits for room in the queue.
func (k *keyedState) waits() bool { return k.head < len(k.waiting) }

// popWaiting takes the batch flushed first out of the waiting ones.
func (k *keyedState) popWaiting() *Batch {
	w := k.waiting[k.head]
	k.waiting[k.head] = waitingBatch{}
	k.head++
	if k.head*2 >= len(k.waiting) {
		// Move the rest to the front, lest appends grow the slice forever.
		n := copy(k.waiting, k.waiting[k.head:])
		clear(k.waiting[n:])
		k.waiting, k.head = k.waiting[:n], 0
	}
	k.waited -= w.size
	k.reused -= w.reused
	return w.b
}

// ageHeap orders open batches by the arrival of their first record.
type ageHeap []*keyedBatch

func (h ageHeap) Len() int           { return len(h) }
func (h ageHeap) Less(i, j int) bool { return h[i].first < h[j].first }
func (h ageHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *ageHeap) Push(x any) {
	o := x.(*keyedBatch)
	o.idx = len(*h)
	*h = append(*h, o)
}
func (h *ageHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	o.idx = -1
	return o
}

// PartitionKey is a Config.Key that batches records by Kafka partition:
// TOPIC-PARTITION. A record without metadata is refused.
func PartitionKey(dst []byte, r *Record) ([]byte, error) {
	if r.Meta == nil {
		return dst, errors.New("record has no Kafka partition")
	}
	dst = append(dst, r.Meta.Topic...)
	dst = append(dst, '-')
	return strconv.AppendInt(dst, int64(r.Meta.Partition), 10), nil
}

// addKeyedBlock adds a block's records one by one, as addKeyed would: each
// needs its key. It is addKeyed cut down to what a block's records can
// be (no metadata, no error, no plan), for speed: each record is found in
// the block once, looked up in recent before the map, and copied into its
// batch with its delimiter. The records are counted read in runs, before
// anything that may flush them.
func (a *aggregator) addKeyedBlock(data []byte) {
	k := a.keyed
	delim, over := a.cfg.Delim, a.cfg.PerRecordOverhead
	maxRecords, maxBytes := a.cfg.MaxRecords, a.cfg.MaxBytes
	key := a.cfg.Key
	a.p.c.bytesRead.Add(int64(len(data)))
	r := &k.rec
	kbuf := k.kbuf
	var counted int64 // records not yet added to the read counter
	for off := 0; off < len(data); {
		i := bytes.IndexByte(data[off:], delim)
		if i < 0 {
			panic("batcher: a block's last record has no delimiter")
		}
		rec := data[off : off+i+1 : off+i+1] // with its delimiter
		off += i + 1
		size := i + 1
		pos := a.pos
		a.pos.Record++
		a.pos.Offset += int64(size)
		counted++

		r.Data = rec[:i:i]
		kb, err := key(kbuf[:0], r)
		kbuf = kb
		if err != nil {
			a.countRead(&counted)
			a.rejectKey(pos, r, err)
			continue
		}
		h := keyHash(kb)
		o := k.recent[slot(h)]
		if o == nil || o.hash != h || len(kb) >= 8 && o.key != string(kb) {
			o = k.find(kb, h)
		}
		w := size + over
		if o != nil && (o.plan != 0 || o.weight+w > maxBytes) {
			// (A planned batch holds Kafka records, not these.)
			why := ReasonBytes
			if o.plan != 0 {
				why = ReasonKey
			}
			a.countRead(&counted)
			a.closeKeyed(o, why)
			o = nil
		}
		if o == nil {
			a.countRead(&counted)
			for len(k.open) >= a.cfg.MaxOpenKeys && len(k.byAge) > 0 {
				a.closeKeyed(k.byAge[0], ReasonKeys)
			}
			o = a.openKeyed(kb, h, 0, pos)
		}
		b := o.b
		b.buf = append(b.buf, rec...)
		b.ends = append(b.ends, len(b.buf)-1)
		if b.meta != nil {
			b.meta = append(b.meta, nil)
		}
		o.weight += w
		k.buffered += size
		switch {
		case len(b.ends) >= maxRecords:
			a.countRead(&counted)
			a.closeKeyed(o, ReasonSize)
		case o.weight+1+over > maxBytes:
			a.countRead(&counted)
			a.closeKeyed(o, ReasonBytes)
		}
		if k.buffered > a.cfg.MaxBufferedBytes {
			a.countRead(&counted)
			a.bound()
		}
	}
	k.kbuf = kbuf
	a.countRead(&counted)
}

// countRead adds *n records to the read counter and zeroes it.
func (a *aggregator) countRead(n *int64) {
	if *n > 0 {
		a.p.c.read.Add(*n)
		*n = 0
	}
}

// addKeyed adds one record to its key's batch.
func (a *aggregator) addKeyed(r *Record) {
	k := a.keyed
	pos, size, ok := a.next(r)
	if !ok {
		return
	}

	kb, err := a.cfg.Key(k.kbuf[:0], r)
	k.kbuf = kb
	if err != nil {
		a.rejectKey(pos, r, err)
		return
	}
	var plan, off, assign int64 = 0, -1, 0
	if r.Meta != nil {
		plan, off, assign = r.Meta.PlanEnd, r.Meta.Offset, r.Meta.Assignment
	}
	h := keyHash(kb)
	o := k.find(kb, h)
	// A record of another plan cannot join the batch. Nor, with a plan hook
	// (one partition per key), can one of another assignment, or at an
	// offset the batch is past: the partition was assigned again and is
	// read anew, and the batch belongs to the earlier assignment. Joined,
	// the later records would be given back with the batch, a hole in the
	// assignment that holds them.
	if o != nil && (o.plan != plan || a.cfg.Plan != nil && (assign != o.assign || off >= 0 && off <= o.last)) {
		a.closeKeyed(o, ReasonKey)
		o = nil
	}
	w := size + a.cfg.PerRecordOverhead
	if o != nil && plan == 0 && o.weight+w > a.cfg.MaxBytes {
		a.closeKeyed(o, ReasonBytes)
		o = nil
	}
	if o == nil {
		if plan == 0 {
			for len(k.open) >= a.cfg.MaxOpenKeys && len(k.byAge) > 0 {
				a.closeKeyed(k.byAge[0], ReasonKeys)
			}
		}
		o = a.openKeyed(kb, h, plan, pos)
		o.assign = assign
	}
	o.b.add(r)
	o.weight += w
	k.buffered += size
	if off >= 0 {
		o.last = off
	}
	switch {
	case plan != 0:
		// Inside a planned cut the limits do not apply: the batch must come
		// out as it did before.
		if off == plan-1 {
			a.closeKeyed(o, ReasonPlanned)
		}
	case o.b.Len() >= a.cfg.MaxRecords:
		a.closeKeyed(o, ReasonSize)
	case o.weight+1+a.cfg.PerRecordOverhead > a.cfg.MaxBytes:
		a.closeKeyed(o, ReasonBytes)
	}
	if k.buffered > a.cfg.MaxBufferedBytes {
		a.bound()
	}
}

// openKeyed opens the batch of a key, its first record at pos.
func (a *aggregator) openKeyed(kb []byte, h uint64, plan int64, pos Pos) *keyedBatch {
	k := a.keyed
	b, reused := a.getKeyed()
	o := &keyedBatch{key: string(kb), b: b, reused: reused, plan: plan, last: -1, idx: -1, first: k.arrivals, hash: h}
	k.arrivals++
	k.reused += reused
	o.b.First = pos
	k.open[o.key] = o
	k.recent[slot(h)] = o
	if plan == 0 {
		if a.cfg.Linger > 0 {
			o.since = time.Now()
		}
		heap.Push(&k.byAge, o)
		if len(k.byAge) == 1 {
			a.rearm() // the newest is on top only when alone
		}
	}
	return o
}

// getKeyed returns an empty batch and the capacity it was taken with: a
// recycled one, or a new one as large as the last full batch, while the
// capacity taken by open batches stays within MaxBufferedBytes; else a
// small new one, as most of many open batches never grow to MaxBytes. So
// the open batches' buffers take at most MaxBufferedBytes up front plus
// what they grew by, at most twice what they hold. (Grown by append from
// small, each new buffer of a run of full batches left four times its
// size of garbage behind, and page faults for all of it.)
func (a *aggregator) getKeyed() (*Batch, int) {
	k := a.keyed
	small := min(a.cfg.MaxBytes, smallKeyedBuf)
	select {
	case b := <-a.p.free:
		b.Delim = a.cfg.Delim
		if c := cap(b.buf); k.reused+c <= a.cfg.MaxBufferedBytes {
			return b, c
		}
		b.buf = make([]byte, 0, small)
		return b, 0
	default:
		if c := k.full; c > small && k.reused+c <= a.cfg.MaxBufferedBytes {
			return &Batch{Delim: a.cfg.Delim, buf: make([]byte, 0, c), ends: make([]int, 0, k.fullRecs)}, c
		}
		return &Batch{Delim: a.cfg.Delim, buf: make([]byte, 0, small)}, 0
	}
}

// smallKeyedBuf is the capacity of a key's buffer past the bound on those
// taken large: it grows by append if the batch does.
const smallKeyedBuf = 512

// largest returns the open batch holding the most bytes that the limits
// may flush, or nil. A scan: it runs only when the buffered bytes pass
// their bound, and at most MaxOpenKeys batches are open.
func (k *keyedState) largest() *keyedBatch {
	var l *keyedBatch
	for _, o := range k.byAge {
		if l == nil || o.b.Size() > l.b.Size() {
			l = o
		}
	}
	return l
}

// rearm sets the timer for the oldest record's linger.
func (a *aggregator) rearm() {
	if a.cfg.Linger <= 0 {
		return
	}
	k := a.keyed
	if len(k.byAge) == 0 {
		a.timer.Stop()
		return
	}
	a.timer.Reset(time.Until(k.byAge[0].since.Add(a.cfg.Linger)))
}

// lingered flushes every batch whose oldest record has waited Linger.
func (a *aggregator) lingered() {
	k := a.keyed
	now := time.Now()
	for len(k.byAge) > 0 && !k.byAge[0].since.Add(a.cfg.Linger).After(now) {
		a.closeKeyed(k.byAge[0], ReasonLinger)
	}
	a.rearm()
}

// flushAll flushes every open batch, oldest first. A planned batch not at
// its planned end stays open on an explicit flush, and is given back at
// the end of input: cut anywhere else, it would differ from the batch a
// sink may have had before.
func (a *aggregator) flushAll(why Reason) {
	k := a.keyed
	for len(k.byAge) > 0 {
		a.closeKeyed(k.byAge[0], why)
	}
	if why == ReasonFlush {
		return
	}
	for _, o := range k.open {
		a.closeKeyed(o, why)
	}
}

// closeKeyed takes o's batch out of the open ones and queues it, or, for a
// planned batch cut short of its planned end, gives its records back.
func (a *aggregator) closeKeyed(o *keyedBatch, why Reason) {
	k := a.keyed
	delete(k.open, o.key)
	if s := slot(o.hash); k.recent[s] == o {
		k.recent[s] = nil
	}
	k.buffered -= o.b.Size()
	k.reused -= o.reused
	if o.idx >= 0 {
		top := o.idx == 0
		heap.Remove(&k.byAge, o.idx)
		if top {
			a.rearm()
		}
	}
	b := o.b
	if why == ReasonSize || why == ReasonBytes {
		// An eighth more, for the next batch's records to be a little longer.
		k.full = min(b.Size()+b.Size()/8, a.cfg.MaxBytes)
		k.fullRecs = min(b.Len()+b.Len()/8, a.cfg.MaxRecords)
	}
	b.Key, b.Keyed = o.key, true
	p := a.p
	reused := o.reused
	if o.plan != 0 {
		if o.last != o.plan-1 {
			p.Logger.Warn("planned batch cut short: its records are left to be read again",
				"batch", b.String(), "planned_end", o.plan-1)
			a.giveBack(b)
			return
		}
		b.Reformed = true
		p.c.reformed.Add(1)
	} else if a.cfg.Plan != nil {
		if err := a.cfg.Plan(b); err != nil {
			if errors.Is(err, ErrNotOwned) {
				p.Logger.Debug("batch given back", "batch", b.String(), "err", err)
				a.giveBack(b)
				return
			}
			p.c.undelivered.Add(int64(b.Len()))
			p.fail(a.seq+1, b.String(), fmt.Errorf("store the batch's cut: %w", err))
			p.release(b)
			return
		}
	}
	a.number(b, why)
	a.sendKeyed(b, reused)
}

// sendKeyed queues b, or, while the queue is full, keeps it waiting. Keys
// fill their batches at about the same pace, so their flushes come in
// bursts: waiting in turn for room for each batch of a burst would stop
// reading while the workers catch up, and leave them idle after. Reading
// pauses once (Parallel+1) x MaxBytes wait, as many as the queue and
// workers hold, or as many batches as are recycled.
func (a *aggregator) sendKeyed(b *Batch, reused int) {
	k := a.keyed
	if a.feed() {
		select {
		case a.queue <- b:
			return
		default:
		}
	}
	k.waiting = append(k.waiting, waitingBatch{b: b, size: b.Size(), reused: reused})
	k.waited += b.Size()
	k.reused += reused
	// Waiting batches keep buffers from being recycled: beyond a burst's
	// worth, or as many as are recycled, reading ahead would only make new
	// ones.
	for k.waited > (a.cfg.Parallel+1)*a.cfg.MaxBytes || len(k.waiting)-k.head > cap(a.p.free) {
		a.enqueue(k.popWaiting())
	}
}

// feed queues waiting batches while the queue has room, and reports
// whether none is left waiting.
func (a *aggregator) feed() bool {
	k := a.keyed
	for k.waits() {
		select {
		case a.queue <- k.waiting[k.head].b:
			k.popWaiting()
		default:
			return false
		}
	}
	return true
}

// bound flushes the largest open batches until they hold at most
// MaxBufferedBytes.
func (a *aggregator) bound() {
	k := a.keyed
	for k.buffered > a.cfg.MaxBufferedBytes {
		l := k.largest()
		if l == nil {
			break // only planned batches: they end where planned
		}
		a.closeKeyed(l, ReasonBuffered)
	}
}

// giveBack drops a batch's records unsent, for the source to read again.
func (a *aggregator) giveBack(b *Batch) {
	a.p.c.withdrawn.Add(int64(b.Len()))
	a.p.release(b)
}

// rejectKey handles a record whose key cannot be found: it goes to the
// dead letter on its own, or counts as undelivered.
func (a *aggregator) rejectKey(pos Pos, r *Record, err error) {
	p := a.p
	where := pos.String()
	if m := r.Meta; m != nil {
		where = fmt.Sprintf("%s[%d] offset %d", m.Topic, m.Partition, m.Offset)
	}
	err = fmt.Errorf("no key: %w", err)
	if p.DeadLetter != nil {
		b := &Batch{Delim: a.cfg.Delim, First: pos}
		b.add(r)
		if p.deadLetter(a.ctx, b, err) {
			if ak, ok := p.Source.(Acker); ok {
				ak.Ack(b)
			}
			return
		}
	}
	p.c.undelivered.Add(1)
	p.Logger.Error("record not delivered", "record", where, "err", err)
	p.noteFailure(where, err)
}
