package kafka

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
)

// metas is a batch as ack sees it.
type metas []*batcher.Meta

func (m metas) Len() int                 { return len(m) }
func (m metas) Meta(i int) *batcher.Meta { return m[i] }

// records makes records of topic/part at the given offsets.
func records(topic string, part int32, offsets ...int64) []batcher.Record {
	recs := make([]batcher.Record, len(offsets))
	for i, o := range offsets {
		recs[i] = batcher.Record{Meta: &batcher.Meta{Topic: topic, Partition: part, Offset: o}}
	}
	return recs
}

func span(from, to int64) []int64 {
	var o []int64
	for i := from; i < to; i++ {
		o = append(o, i)
	}
	return o
}

// batch picks the metas of recs[i:j].
func batch(recs []batcher.Record, i, j int) metas {
	var b metas
	for _, r := range recs[i:j] {
		b = append(b, r.Meta)
	}
	return b
}

func acked(t *testing.T, tr *tracker, st *partState) int64 {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return st.acked
}

func TestTrackerInOrder(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 100, -1, 0)
	recs := records("t", 0, span(100, 130)...)
	tr.sent(st, recs)
	if got := acked(t, tr, st); got != 100 {
		t.Fatalf("before any ack: watermark %d, want 100", got)
	}
	tr.ack(batch(recs, 0, 10))
	if got := acked(t, tr, st); got != 110 {
		t.Fatalf("after the first batch: watermark %d, want 110", got)
	}
	tr.ack(batch(recs, 10, 30))
	if got := acked(t, tr, st); got != 130 {
		t.Fatalf("after all: watermark %d, want 130", got)
	}
}

func TestTrackerOutOfOrder(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	recs := records("t", 0, span(0, 30)...)
	tr.sent(st, recs)
	tr.ack(batch(recs, 20, 30))
	tr.ack(batch(recs, 10, 20))
	if got := acked(t, tr, st); got != 0 {
		t.Fatalf("first batch not acked: watermark %d, want 0", got)
	}
	tr.ack(batch(recs, 0, 10))
	if got := acked(t, tr, st); got != 30 {
		t.Fatalf("all acked: watermark %d, want 30", got)
	}
}

func TestTrackerFailedBatchBlocks(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	recs := records("t", 0, span(0, 30)...)
	tr.sent(st, recs)
	tr.ack(batch(recs, 0, 10))
	tr.ack(batch(recs, 20, 30)) // 10-19 failed
	if got := acked(t, tr, st); got != 10 {
		t.Fatalf("watermark %d, want 10: the failed batch's first offset", got)
	}
	cs := tr.commits()
	if len(cs) != 1 || cs[0].offset != 10 {
		t.Fatalf("commits %+v, want one at offset 10", cs)
	}
}

// Offsets need not be consecutive (compaction, transaction markers): the
// watermark is the first record not done with, not a count.
func TestTrackerOffsetGaps(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	recs := records("t", 0, 0, 1, 5, 6, 9)
	tr.sent(st, recs)
	tr.ack(batch(recs, 0, 2))
	if got := acked(t, tr, st); got != 5 {
		t.Fatalf("watermark %d, want 5 (next record after the gap)", got)
	}
	tr.ack(batch(recs, 3, 5))
	if got := acked(t, tr, st); got != 5 {
		t.Fatalf("watermark %d, want 5 while offset 5 is not done", got)
	}
	tr.ack(batch(recs, 2, 3))
	if got := acked(t, tr, st); got != 10 {
		t.Fatalf("watermark %d, want 10", got)
	}
}

func TestTrackerBatchesMixPartitions(t *testing.T) {
	tr := newTracker()
	a := tr.assign("t", 0, 0, -1, 0)
	b := tr.assign("t", 1, 50, -1, 0)
	c := tr.assign("u", 0, 7, -1, 0)
	ra := records("t", 0, span(0, 10)...)
	rb := records("t", 1, span(50, 60)...)
	rc := records("u", 0, span(7, 17)...)
	tr.sent(a, ra)
	tr.sent(b, rb)
	tr.sent(c, rc)
	// Batch 1: a[0:5] b[0:5] c[0:5]; batch 2 the rest, interleaved.
	b1 := append(append(batch(ra, 0, 5), batch(rb, 0, 5)...), batch(rc, 0, 5)...)
	b2 := append(append(batch(rc, 5, 10), batch(ra, 5, 10)...), batch(rb, 5, 10)...)
	tr.ack(b2)
	for _, st := range []*partState{a, b, c} {
		if got, want := acked(t, tr, st), st.committed; got != want {
			t.Fatalf("%v: watermark %d after the second batch alone, want %d", st.tp, got, want)
		}
	}
	tr.ack(b1)
	for st, want := range map[*partState]int64{a: 10, b: 60, c: 17} {
		if got := acked(t, tr, st); got != want {
			t.Fatalf("%v: watermark %d, want %d", st.tp, got, want)
		}
	}
	lag := tr.lag(nil)
	if lag["t"] != 0 || lag["u"] != 0 {
		t.Fatalf("lag %v, want none", lag)
	}
}

// A partition revoked and assigned again: a late ack for a record read under
// the old assignment must not move the new one, even at the same offsets.
func TestTrackerRevocation(t *testing.T) {
	tr := newTracker()
	old := tr.assign("t", 0, 0, -1, 0)
	oldRecs := records("t", 0, span(0, 20)...)
	tr.sent(old, oldRecs)
	tr.ack(batch(oldRecs, 0, 5))
	tr.revokeAll(false)
	if cs := tr.commits(); len(cs) != 0 {
		t.Fatalf("commits %+v after revocation, want none", cs)
	}
	tr.ack(batch(oldRecs, 5, 10)) // no assignment at all: ignored
	if tr.sent(old, records("t", 0, 20)) {
		t.Fatal("a revoked assignment took more records")
	}

	cur := tr.assign("t", 0, 5, -1, 0)
	newRecs := records("t", 0, span(5, 20)...)
	tr.sent(cur, newRecs)
	tr.ack(batch(oldRecs, 5, 20))
	if got := acked(t, tr, cur); got != 5 {
		t.Fatalf("a late ack of the old assignment moved the new one to %d", got)
	}
	if cs := tr.commits(); len(cs) != 0 {
		t.Fatalf("commits %+v, want none", cs)
	}
	tr.ack(batch(newRecs, 0, 15))
	if got := acked(t, tr, cur); got != 20 {
		t.Fatalf("watermark %d, want 20", got)
	}
}

func TestTrackerAssignReplaces(t *testing.T) {
	tr := newTracker()
	old := tr.assign("t", 0, 0, 10, 10)
	cur := tr.assign("t", 0, 0, 10, 10)
	if !old.revoked || cur.revoked {
		t.Fatal("assigning a partition again did not revoke its old state")
	}
	// Its records must not join a batch of the old state's (Meta.Assignment).
	if old.n == cur.n {
		t.Fatalf("both assignments are number %d", cur.n)
	}
	if tr.incomplete != 1 {
		t.Fatalf("%d partitions incomplete, want 1", tr.incomplete)
	}
}

func TestTrackerCommits(t *testing.T) {
	tr := newTracker()
	a := tr.assign("t", 0, 0, -1, 0)
	b := tr.assign("t", 1, 0, -1, 0)
	ra, rb := records("t", 0, span(0, 10)...), records("t", 1, span(0, 10)...)
	tr.sent(a, ra)
	tr.sent(b, rb)
	tr.ack(batch(ra, 0, 10))
	cs := tr.commits()
	if len(cs) != 1 || cs[0].st != a || cs[0].offset != 10 {
		t.Fatalf("commits %+v, want t[0] at 10", cs)
	}
	tr.committed(cs)
	if cs := tr.commits(); len(cs) != 0 {
		t.Fatalf("commits %+v after committing, want none", cs)
	}
}

func TestTrackerUntilEnd(t *testing.T) {
	tr := newTracker()
	if tr.complete() {
		t.Fatal("complete before any assignment")
	}
	tr.assign("t", 0, 40, 40, 40)
	// A group assigns partitions one by one: those assigned first may be
	// complete while the rest are not yet there.
	if tr.complete() || tr.drain() {
		t.Fatal("complete before the assignment was activated")
	}
	tr.activate()
	if !tr.complete() {
		t.Fatal("an empty partition alone is not complete")
	}
	st := tr.assign("t", 1, 0, 10, 10)
	tr.follow(st, func() int64 { return 12 })
	if tr.complete() {
		t.Fatal("complete with records below the end unsent")
	}
	recs := records("t", 1, span(0, 10)...)
	tr.sent(st, recs[:9])
	if tr.complete() {
		t.Fatal("complete one record short of the end")
	}
	tr.sent(st, recs[9:])
	if !tr.complete() {
		t.Fatal("not complete with every record below the end sent")
	}
	if lag := tr.lag(nil); lag["t"] != 10 {
		t.Fatalf("lag %v, want 10 until acked (measured to the end, not the newer high watermark)", lag)
	}
	tr.ack(batch(recs, 0, 10))
	if lag := tr.lag(nil); lag["t"] != 0 {
		t.Fatalf("lag %v, want 0", lag)
	}
	tr.revokeAll(true)
	if tr.complete() {
		t.Fatal("complete with no assignment in force")
	}
	if lag := tr.lag(nil); lag["t"] != 0 {
		t.Fatalf("kept states: lag %v, want t:0", lag)
	}
}

// Lag is measured to the latest high watermark known: the consumer's, as
// it moves, or one the broker gave, even while nothing more is sent.
func TestTrackerLagToHighWatermark(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 100)
	recs := records("t", 0, span(0, 10)...)
	tr.sent(st, recs)
	tr.ack(batch(recs, 0, 10))
	if lag := tr.lag(nil); lag["t"] != 90 {
		t.Fatalf("lag %v, want 90", lag)
	}
	var consumer atomic.Int64
	consumer.Store(150)
	tr.follow(st, consumer.Load)
	if lag := tr.lag(nil); lag["t"] != 140 {
		t.Fatalf("lag %v, want 140, to the consumer's high watermark", lag)
	}
	tr.highWatermark(topicPartition{"t", 0}, 200) // the consumer stopped fetching
	if lag := tr.lag(nil); lag["t"] != 190 {
		t.Fatalf("lag %v, want 190, to the broker's high watermark", lag)
	}
	consumer.Store(210)
	if pl := tr.partLag(); len(pl) != 1 || pl[0].Lag != 200 {
		t.Fatalf("partition lag %+v, want 200", pl)
	}

	bounded := tr.assign("u", 0, 0, 10, 10)
	tr.follow(bounded, consumer.Load)
	if lag := tr.lag(nil); lag["u"] != 10 {
		t.Fatalf("lag %v, want u:10, to the end offset", lag)
	}
	if tps := tr.unbounded(); len(tps) != 1 || tps[0] != (topicPartition{"t", 0}) {
		t.Fatalf("unbounded %v, want t[0] alone", tps)
	}
}

// Sends and acks at once, from many goroutines: each partition's records
// are sent in chunks of random sizes, a few batches ahead of the acks, as
// the pipeline bounds what is in flight, while eight workers ack, out of
// order, the batches whose records were all sent, and commit. No commit
// may ever pass a record not acked, and in the end all is committed.
func TestTrackerConcurrentAcks(t *testing.T) {
	tr := newTracker()
	const parts, per, size, window = 4, 5000, 50, 4
	states := make([]*partState, parts)
	all := make([][]batcher.Record, parts)
	slots := make([]chan struct{}, parts) // batches a partition has in flight
	for p := range parts {
		states[p] = tr.assign("t", int32(p), 0, per, per)
		all[p] = records("t", int32(p), span(0, per)...)
		slots[p] = make(chan struct{}, window)
	}
	tr.activate()
	// Batch i holds records i*size to (i+1)*size of every partition: the
	// aggregator mixes partitions. It is acked once all are sent.
	batches := make([]metas, per/size)
	unsent := make([]atomic.Int32, len(batches)) // partitions yet to send batch i's records
	for i := range batches {
		for p := range parts {
			batches[i] = append(batches[i], batch(all[p], i*size, (i+1)*size)...)
		}
		unsent[i].Store(parts)
	}
	work := make(chan metas, len(batches))
	var done [parts][per]atomic.Bool // set before the record's ack
	var passed atomic.Value          // the first commit seen past a record not acked
	var senders, ackers sync.WaitGroup
	for p := range parts {
		senders.Go(func() {
			rng := rand.New(rand.NewPCG(1, uint64(p)))
			for n := 0; n < per; {
				if n%size == 0 {
					slots[p] <- struct{}{}
				}
				m := min(n+1+rng.IntN(size), (n/size+1)*size)
				tr.sent(states[p], all[p][n:m])
				if m%size == 0 && unsent[m/size-1].Add(-1) == 0 {
					work <- batches[m/size-1]
				}
				n = m
			}
		})
	}
	ack := func(b metas) {
		for _, m := range b {
			done[m.Partition][m.Offset].Store(true)
		}
		tr.ack(b)
		for _, s := range slots {
			<-s
		}
		cs := tr.commits()
		for _, c := range cs {
			for o := range c.offset {
				if !done[c.st.tp.part][o].Load() {
					passed.CompareAndSwap(nil, fmt.Sprintf("commit t[%d] at %d, past record %d", c.st.tp.part, c.offset, o))
				}
			}
		}
		tr.committed(cs)
		tr.lag(nil)
	}
	for range 8 {
		ackers.Go(func() {
			for b := range work {
				select {
				case later, ok := <-work: // if there is one, ack it first
					if ok {
						ack(later)
					}
				default:
				}
				ack(b)
			}
		})
	}
	senders.Wait()
	close(work)
	ackers.Wait()
	if p := passed.Load(); p != nil {
		t.Fatalf("%s, not acked", p)
	}
	for p, st := range states {
		if got := acked(t, tr, st); got != per {
			t.Fatalf("partition %d: watermark %d, want %d", p, got, per)
		}
		if st.committed != per || len(st.pending) != 0 {
			t.Fatalf("partition %d: committed %d with %d pending, want %d with none", p, st.committed, len(st.pending), per)
		}
	}
	if !tr.complete() {
		t.Fatal("not complete")
	}
}

// The pending list is compacted as the head moves, so memory follows what
// is in flight, not what was read.
func TestTrackerCompacts(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	var prev []batcher.Record
	for i := range int64(1000) {
		recs := records("t", 0, span(i*10, i*10+10)...)
		tr.sent(st, recs)
		if prev != nil {
			tr.ack(batch(prev, 0, 10))
		}
		prev = recs
	}
	tr.mu.Lock()
	n := cap(st.pending)
	tr.mu.Unlock()
	if n > 64 {
		t.Fatalf("pending list grew to %d entries with 20 in flight", n)
	}
	if got := acked(t, tr, st); got != 9990 {
		t.Fatalf("watermark %d, want 9990", got)
	}
}

// A partition whose last offsets below the end hold no record (a
// transaction marker) is complete once that is known, and its watermark
// reaches the end once every record sent is acked.
func TestTrackerReadToEnd(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, 12, 12)
	tr.activate()
	recs := records("t", 0, span(0, 10)...)
	tr.sent(st, recs)
	tr.readToEnd(st)
	if !tr.complete() {
		t.Fatal("not complete once read to the end")
	}
	if got := acked(t, tr, st); got != 0 {
		t.Fatalf("watermark %d before any ack, want 0", got)
	}
	tr.ack(batch(recs, 0, 10))
	if got := acked(t, tr, st); got != 12 {
		t.Fatalf("watermark %d, want 12: past the marker", got)
	}

	// Everything acked before the end is known: the watermark moves then.
	idle := tr.assign("t", 1, 5, 6, 6)
	tr.readToEnd(idle)
	if got := acked(t, tr, idle); got != 6 || !tr.complete() {
		t.Fatalf("watermark %d, complete %v; want 6, true", got, tr.complete())
	}
	if cs := tr.commits(); len(cs) != 2 {
		t.Fatalf("commits %+v, want both partitions at their end", cs)
	}
	tr.readToEnd(idle) // again: nothing changes
	if tr.incomplete != 0 {
		t.Fatalf("%d partitions incomplete", tr.incomplete)
	}
}

// A partition read without an end whose last offsets hold aborted records
// and markers: the watermark passes them once every record sent before is
// acked, and records sent after them hold it as usual. A skip backwards,
// or of a revoked partition, changes nothing.
func TestTrackerSkip(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	tr.activate()
	recs := records("t", 0, span(0, 10)...)
	tr.sent(st, recs)
	tr.skip(st, 20) // 10-19: an aborted transaction and its marker
	if got := acked(t, tr, st); got != 0 {
		t.Fatalf("watermark %d before any ack, want 0", got)
	}
	tr.ack(batch(recs, 0, 10))
	if got := acked(t, tr, st); got != 20 {
		t.Fatalf("watermark %d, want 20: past the tail", got)
	}
	tr.skip(st, 15)
	more := records("t", 0, span(20, 25)...)
	tr.sent(st, more)
	if got := acked(t, tr, st); got != 20 {
		t.Fatalf("watermark %d with 20-24 in flight, want 20", got)
	}
	tr.ack(batch(more, 0, 5))
	if got := acked(t, tr, st); got != 25 {
		t.Fatalf("watermark %d, want 25", got)
	}
	tr.revoke()
	tr.skip(st, 30)
	if got := acked(t, tr, st); got != 25 {
		t.Fatalf("watermark %d after a skip of a revoked partition, want 25", got)
	}
}

// For a sink that commits offsets itself, only a skip's end with nothing
// in flight and nothing sent after it is the source's to commit; while
// that commit is out, the partition takes no records.
func TestTrackerGateTails(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	busy := tr.assign("t", 1, 0, -1, 0)
	tr.activate()
	recs := records("t", 0, span(0, 10)...)
	tr.sent(st, recs)
	tr.skip(st, 12) // a commit marker at 10, an abort marker at 11
	tr.ack(batch(recs, 0, 10))
	other := records("t", 1, span(0, 10)...)
	tr.sent(busy, other)
	tr.ack(batch(other, 0, 5)) // the sink committed 5
	tails, rest := tr.gateTails(tr.commits())
	if len(tails) != 1 || tails[0].st != st || tails[0].offset != 12 || len(rest) != 1 || rest[0].st != busy {
		t.Fatalf("tails %+v, rest %+v; want partition 0 at 12 a tail, partition 1 not", tails, rest)
	}
	more := records("t", 0, 12, 13)
	ok, wait := tr.sendOrWait(st, more)
	if ok || wait == nil {
		t.Fatalf("sendOrWait while the tail's commit is out: %v, %v; want to wait", ok, wait)
	}
	if again, _ := tr.gateTails([]commit{{st, 12}}); len(again) != 0 {
		t.Fatal("a tail gated twice")
	}
	tr.ungate(tails)
	select {
	case <-wait:
	default:
		t.Fatal("not released by ungate")
	}
	if ok, wait := tr.sendOrWait(st, more); !ok || wait != nil {
		t.Fatalf("sendOrWait after ungate: %v, %v", ok, wait)
	}
	tr.committed(tails)
	// Records sent after the tail: their transaction commits past it.
	tr.skip(st, 20)
	tr.ack(batch(more, 0, 2))
	tr.sent(st, records("t", 0, 20))
	if tails, _ := tr.gateTails(tr.commits()); len(tails) != 0 {
		t.Fatalf("tails %+v with a record sent after the skip, want none", tails)
	}
}

// A drained partition that a rebalance took away is not this process's to
// vouch for; one it got back, starting again below the end, is short of
// it; one it got only after the drain was never drained.
func TestTrackerShortOfEnd(t *testing.T) {
	tr := newTracker()
	kept := tr.assign("t", 0, 0, 10, 10)
	gone := tr.assign("t", 1, 0, 10, 10)
	done := tr.assign("t", 2, 0, 10, 10)
	tr.activate()
	recs := make(map[*partState][]batcher.Record)
	for _, st := range []*partState{kept, gone, done} {
		recs[st] = records("t", st.tp.part, span(0, 10)...)
		tr.sent(st, recs[st])
	}
	if !tr.drain() {
		t.Fatal("not drained with every record sent")
	}
	tr.ack(batch(recs[done], 0, 10))
	tr.ack(batch(recs[kept], 0, 3))
	tr.committed(tr.commits())

	tr.revokeAll(false) // a rebalance
	tr.assign("t", 0, 3, 10, 10)
	tr.assign("t", 2, 10, 10, 10)
	tr.assign("t", 3, 0, 10, 10) // new to this process
	tr.revokeAll(true)           // closing: the states stay
	cs := tr.shortOfEnd()
	if len(cs) != 1 || cs[0].st.tp != (topicPartition{"t", 0}) || cs[0].offset != 3 {
		t.Fatalf("short of the end: %+v, want t[0] at 3", cs)
	}
}

// A revoke: no batch with records of the partitions taken starts from then
// on; one started before is waited for, its acks still count, and they
// are committed before the partitions go; a batch mixing them with records
// of the next assignment keeps only those.
func TestTrackerWithdraw(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	recs := records("t", 0, span(0, 30)...)
	tr.sent(st, recs)
	if idx := tr.withdraw(1, batch(recs, 0, 10)); idx != nil {
		t.Fatalf("withdrew %v of a partition held", idx)
	}
	tr.revoke()
	if idx := tr.withdraw(2, batch(recs, 10, 20)); len(idx) != 10 {
		t.Fatalf("withdrew %v of a partition revoked, want all 10", idx)
	}
	n, settled := tr.inFlight()
	if n != 1 {
		t.Fatalf("%d batches in flight, want batch 1", n)
	}
	tr.settle(2) // never started: nothing to wake
	select {
	case <-settled:
		t.Fatal("woken by a batch that never started")
	default:
	}
	tr.ack(batch(recs, 0, 10))
	tr.settle(1)
	<-settled
	if n, _ := tr.inFlight(); n != 0 {
		t.Fatalf("%d batches in flight after the last settled", n)
	}
	if cs := tr.commits(); len(cs) != 1 || cs[0].offset != 10 {
		t.Fatalf("commits %+v, want offset 10: what batch 1 delivered", cs)
	}
	tr.letGo(false)

	cur := tr.assign("t", 0, 10, -1, 0)
	again := records("t", 0, span(10, 20)...)
	tr.sent(cur, again)
	mixed := append(batch(recs, 20, 30), batch(again, 0, 5)...)
	idx := tr.withdraw(3, mixed)
	if len(idx) != 10 || idx[0] != 0 || idx[9] != 9 {
		t.Fatalf("withdrew %v, want the 10 records of the old assignment", idx)
	}
}

// Workers may start a partition's batches out of order: one started after
// the revoke whose records lie below those of a batch started before it
// is delivered too, and waited for, so that the commit passes both; the
// new owner would deliver the later batch's records again otherwise. A
// batch above every one started, or a retry of the highest, is withdrawn.
func TestTrackerWithdrawBelowStarted(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	recs := records("t", 0, span(0, 30)...)
	tr.sent(st, recs)
	tr.withdraw(2, batch(recs, 10, 20)) // batch 1 (0-9) is still on its way
	tr.revoke()
	if n, _ := tr.inFlight(); n != 2 {
		t.Fatalf("%d in flight, want batch 2 and the records below it", n)
	}
	if idx := tr.withdraw(1, batch(recs, 0, 10)); idx != nil {
		t.Fatalf("withdrew %v, below records of a batch started", idx)
	}
	if idx := tr.withdraw(3, batch(recs, 20, 30)); len(idx) != 10 {
		t.Fatalf("withdrew %v, want all 10 above every batch started", idx)
	}
	tr.ack(batch(recs, 10, 20))
	tr.settle(2)
	if n, _ := tr.inFlight(); n != 1 {
		t.Fatalf("%d in flight, want batch 1", n)
	}
	tr.ack(batch(recs, 0, 10))
	tr.settle(1)
	if n, _ := tr.inFlight(); n != 0 {
		t.Fatalf("%d in flight after both settled", n)
	}
	if cs := tr.commits(); len(cs) != 1 || cs[0].offset != 20 {
		t.Fatalf("commits %+v, want offset 20: both batches delivered", cs)
	}

	tr = newTracker()
	st = tr.assign("t", 0, 0, -1, 0)
	tr.sent(st, recs)
	tr.withdraw(1, batch(recs, 0, 10))
	tr.revoke()
	if idx := tr.withdraw(1, batch(recs, 0, 10)); len(idx) != 10 {
		t.Fatalf("withdrew %v of a retry of the highest batch, want all 10", idx)
	}
}

// With --partition-by a partition's records sit in many key batches, not
// consecutive in any: acked in any order, the watermark is always the
// first record not acked.
func TestTrackerKeyBatchesInterleaved(t *testing.T) {
	tr := newTracker()
	st := tr.assign("t", 0, 0, -1, 0)
	recs := records("t", 0, span(0, 600)...)
	tr.sent(st, recs)
	// Key k of record i is i%7; batches of up to 5 records of a key.
	var batches []metas
	open := map[int]metas{}
	for i, r := range recs {
		k := i % 7
		open[k] = append(open[k], r.Meta)
		if len(open[k]) == 5 {
			batches = append(batches, open[k])
			delete(open, k)
		}
	}
	for _, b := range open {
		batches = append(batches, b)
	}
	done := make([]bool, 600)
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
	for _, b := range batches {
		tr.ack(b)
		for _, m := range b {
			done[m.Offset] = true
		}
		want := int64(0)
		for want < 600 && done[want] {
			want++
		}
		if got := acked(t, tr, st); got != want {
			t.Fatalf("watermark %d, want %d", got, want)
		}
	}
}

// A cooperative rebalance revokes some partitions: only batches holding
// their records are waited for, the others go on taking records, and the
// ones let go keep their lag until someone else holds them.
func TestTrackerRevokeParts(t *testing.T) {
	tr := newTracker()
	st0 := tr.assign("t", 0, 0, -1, 0)
	st1 := tr.assign("t", 1, 0, -1, 0)
	tr.activate()
	r0, r1 := records("t", 0, span(0, 10)...), records("t", 1, span(0, 10)...)
	tr.sent(st0, r0)
	tr.sent(st1, r1)
	tr.withdraw(1, batch(r0, 0, 10))
	tr.withdraw(2, batch(r1, 0, 10))

	tr.revokeParts(topicPartition{"t", 0})
	if n, _ := tr.inFlight(); n != 1 {
		t.Fatalf("%d batches in flight of the revoked partition, want 1", n)
	}
	if !tr.sent(st1, records("t", 1, 10)) || tr.sent(st0, records("t", 0, 10)) {
		t.Fatal("the kept partition takes no records, or the revoked one does")
	}
	tr.ack(batch(r0, 0, 5))
	tr.settle(1)
	if n, _ := tr.inFlight(); n != 0 {
		t.Fatalf("%d batches in flight after the revoked one settled", n)
	}
	tr.letGoParts(topicPartition{"t", 0})
	if h := tr.held(); len(h) != 1 || !h[topicPartition{"t", 1}] {
		t.Fatalf("held %v, want t[1] alone", h)
	}
	tr.mu.Lock()
	active := tr.active
	tr.mu.Unlock()
	if !active {
		t.Fatal("letting one partition go ended the assignment")
	}
	if lag := tr.partLag(); len(lag) != 2 || lag[0].Lag != 5 {
		t.Fatalf("lag %+v, want t[0]'s 5 records left", lag)
	}
}
