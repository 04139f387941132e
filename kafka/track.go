package kafka

import (
	"sort"
	"sync"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/monitor"
)

// A tracker follows, for every partition being read, the records handed to
// the pipeline and which of them are done with (delivered or dead-lettered),
// so that the offset committed for a partition never passes a record that is
// not. Acks arrive in any order; a batch never acked holds its partitions at
// its first record.
//
// Records are matched by the identity of their *batcher.Meta, not by offset:
// a partition revoked in a rebalance and assigned again gets a new state, and
// a late ack for a record read under the old one must not count for the copy
// read again under the new one.
type tracker struct {
	mu         sync.Mutex
	parts      map[topicPartition]*partState
	incomplete int  // current partitions with records below their end not yet sent
	active     bool // an assignment is in force (group mode: between Setup and Cleanup)

	drained map[topicPartition]bool // partitions read to their end when Run returned

	assigned int64 // partition assignments made: numbers each state (partState.n)

	// left is the lag of the partitions given up, until an assignment
	// says who holds them: if none comes (the brokers are lost), their
	// records are still unread, and lag must not say 0.
	left map[topicPartition]int64

	// Batches being delivered, by Seq, and the states of their records:
	// a revoke waits for those holding records of the partitions it takes.
	started map[int64][]*partState
	settled chan struct{} // closed and replaced when a started batch settles
}

type topicPartition struct {
	topic string
	part  int32
}

// partState is one assignment of one partition.
type partState struct {
	tp      topicPartition
	n       int64           // its number among assignments: its records' Meta.Assignment
	pending []*batcher.Meta // sent and not yet done with, in offset order from head
	done    []bool          // done[i]: pending[i] is done with
	taken   []bool          // taken[i]: pending[i] is in a batch that started
	head    int

	start     int64 // where reading started
	next      int64 // offset after the last record sent; where reading starts before any
	acked     int64 // every record sent below this offset is done with
	committed int64 // the last offset committed, or where reading started
	end       int64 // end offset captured at assignment (--until-end); -1: none
	hwm       int64 // latest high watermark known
	revoked   bool  // being given up: takes no records, and no batch of them starts
	gone      bool  // given up: acks no longer count
	tail      int64 // the last skip's end: nothing to read from the last record before it
	// above is the offset after the highest record in a batch that
	// started: a revoke withdraws no record below it, or the commit would
	// stop short of records delivered, and the new owner deliver them
	// again. Workers may start a partition's batches out of order.
	above int64

	// gate, while a commit of the tail is sent for a sink that commits
	// offsets itself (offsetsInSink), holds back further records: no
	// transaction may commit past them before the tail's commit is in.
	gate chan struct{}

	liveHWM func() int64 // the consumer's high watermark, as it moves; nil before reading starts
}

func newTracker() *tracker {
	return &tracker{
		parts:   make(map[topicPartition]*partState),
		drained: make(map[topicPartition]bool),
		left:    make(map[topicPartition]int64),
		started: make(map[int64][]*partState),
		settled: make(chan struct{}),
	}
}

// complete reports whether the end offset of every partition assigned now has
// been reached: every record below it was sent.
func (st *partState) complete() bool { return st.end >= 0 && st.next >= st.end }

// assign starts tracking a partition read from start. end is the offset to
// stop at (-1: none) and hwm the high watermark known now. A state already
// held for the partition is revoked.
func (t *tracker) assign(topic string, part int32, start, end, hwm int64) *partState {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := topicPartition{topic, part}
	if old := t.parts[tp]; old != nil {
		t.revokeLocked(old)
		old.gone = true
	}
	t.assigned++
	st := &partState{tp: tp, n: t.assigned, start: start, next: start, acked: start, committed: start, end: end, hwm: max(hwm, start)}
	t.parts[tp] = st
	delete(t.left, tp)
	if st.end >= 0 && !st.complete() {
		t.incomplete++
	}
	return st
}

// activate marks an assignment in force, even one of no partitions, once
// all its partitions are assigned: until then, the ones assigned so far
// may be complete while the rest are not.
func (t *tracker) activate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = true
	clear(t.left) // the partitions not assigned here are another member's
}

// live returns the current state of a partition, or nil if there is none
// or it is being revoked.
func (t *tracker) live(topic string, part int32) *partState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.parts[topicPartition{topic, part}]; st != nil && !st.revoked {
		return st
	}
	return nil
}

// get returns the current state of a partition, or nil.
func (t *tracker) get(topic string, part int32) *partState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.parts[topicPartition{topic, part}]
}

// sent records that recs, all of st's partition and in offset order, are
// about to be handed to the pipeline. It returns false, and records nothing,
// if st was revoked meanwhile: the records must then be dropped.
func (t *tracker) sent(st *partState, recs []batcher.Record) bool {
	ok, _ := t.sendOrWait(st, recs)
	return ok
}

// sendOrWait is sent, unless a commit of st's tail is being sent: it then
// records nothing and returns a channel closed once it is over, to try
// again.
func (t *tracker) sendOrWait(st *partState, recs []batcher.Record) (bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st.revoked {
		return false, nil
	}
	if st.gate != nil && len(recs) > 0 {
		return false, st.gate
	}
	if st.head > 0 && st.head >= len(st.pending)/2 {
		n := copy(st.pending, st.pending[st.head:])
		copy(st.done, st.done[st.head:])
		copy(st.taken, st.taken[st.head:])
		clear(st.pending[n:])
		st.pending, st.done, st.taken, st.head = st.pending[:n], st.done[:n], st.taken[:n], 0
	}
	wasComplete := st.complete()
	for i := range recs {
		m := recs[i].Meta
		st.pending = append(st.pending, m)
		st.done = append(st.done, false)
		st.taken = append(st.taken, false)
		st.next = m.Offset + 1
	}
	if st.end >= 0 && !wasComplete && st.complete() {
		t.incomplete--
	}
	return true, nil
}

// follow makes lag read st's high watermark from hwm, as it moves.
func (t *tracker) follow(st *partState, hwm func() int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st.liveHWM = hwm
}

// unbounded returns the partitions assigned now that are read without an
// end offset: those whose lag is measured to the high watermark.
func (t *tracker) unbounded() []topicPartition {
	t.mu.Lock()
	defer t.mu.Unlock()
	var tps []topicPartition
	for tp, st := range t.parts {
		if !st.revoked && st.end < 0 {
			tps = append(tps, tp)
		}
	}
	return tps
}

// highWatermark records a high watermark of a partition assigned now.
func (t *tracker) highWatermark(tp topicPartition, hwm int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.parts[tp]; st != nil && !st.revoked {
		st.hwm = max(st.hwm, hwm)
	}
}

// readToEnd records that nothing is left to read below st's end offset,
// though the last record sent is short of it: the offsets between hold
// transaction markers, or records compacted away.
func (t *tracker) readToEnd(st *partState) {
	if st.end >= 0 {
		t.skip(st, st.end)
	}
}

// skip records that nothing is left to read from the last record sent of
// st up to offset to: transaction markers, aborted records or offsets
// compacted away. The offset committed passes them once every record sent
// before them is done with.
func (t *tracker) skip(st *partState, to int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st.revoked || to <= st.next {
		return
	}
	wasComplete := st.complete()
	st.next, st.tail = to, to
	if st.head == len(st.pending) {
		st.acked = st.next // nothing in flight: no ack will move it
	}
	if st.end >= 0 && !wasComplete && st.complete() {
		t.incomplete--
	}
}

// metaLister is what ack needs of a *batcher.Batch.
type metaLister interface {
	Len() int
	Meta(i int) *batcher.Meta
}

// ack marks the records of b done with. Records of an assignment given up
// are ignored; those of one being revoked still count, for its last commit.
func (t *tracker) ack(b metaLister) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.locate(b, func(_ int, st *partState, j int) {
		if st == nil || st.gone || j < 0 {
			return // nothing to mark
		}
		st.done[j] = true
		if j == st.head {
			st.advance()
		}
	})
}

// locate calls f with each record of b that has Kafka metadata: its index
// in b, its partition's state (nil for a partition not tracked) and its
// index in the state's pending records (-1 if not there). t.mu is held.
func (t *tracker) locate(b metaLister, f func(i int, st *partState, j int)) {
	var (
		st   *partState
		cur  topicPartition
		seen bool
		j    = -1 // index in st.pending of the last record found
	)
	for i := range b.Len() {
		m := b.Meta(i)
		if m == nil {
			continue
		}
		if !seen || cur.topic != m.Topic || cur.part != m.Partition {
			cur, seen = topicPartition{m.Topic, m.Partition}, true
			st, j = t.parts[cur], -1
		}
		k := -1
		if st != nil {
			// A batch's records of one partition are consecutive in the
			// order they were sent, so the next one is almost always
			// just after.
			if k = j + 1; k < st.head || k >= len(st.pending) || st.pending[k] != m {
				k = st.find(m)
			}
			if k >= 0 {
				j = k
			}
		}
		f(i, st, k)
	}
}

// find returns the index of m in pending, or -1.
func (st *partState) find(m *batcher.Meta) int {
	p := st.pending[st.head:]
	k := sort.Search(len(p), func(i int) bool { return p[i].Offset >= m.Offset })
	if k < len(p) && p[k] == m {
		return st.head + k
	}
	return -1
}

// advance moves the watermark past the records at the head that are done.
func (st *partState) advance() {
	for st.head < len(st.pending) && st.done[st.head] {
		st.pending[st.head] = nil
		st.head++
	}
	if st.head == len(st.pending) {
		st.pending, st.done, st.taken, st.head = st.pending[:0], st.done[:0], st.taken[:0], 0
		st.acked = st.next
		return
	}
	// Offsets may have gaps: the first record not done with is the bound.
	st.acked = st.pending[st.head].Offset
}

// A commit is an offset to commit for a partition: the next one to read.
type commit struct {
	st     *partState
	offset int64
}

// commits returns the offsets that moved since the last commit, for the
// partitions assigned now, those being revoked included.
func (t *tracker) commits() []commit {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cs []commit
	for _, st := range t.parts {
		if !st.gone && st.acked > st.committed {
			cs = append(cs, commit{st, st.acked})
		}
	}
	return cs
}

// gateTails splits cs, for a sink that commits offsets itself, into the
// tails the source must commit (a skip's end, with every record before it
// done with and none sent after) and the rest, which the sink committed.
// Each tail's partition takes no records until ungate: a transaction of
// later records then commits after the tail, never before it.
func (t *tracker) gateTails(cs []commit) (tails, rest []commit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cs {
		st := c.st
		if c.offset == st.tail && st.next == st.tail && st.head == len(st.pending) && !st.revoked && st.gate == nil {
			st.gate = make(chan struct{})
			tails = append(tails, c)
		} else {
			rest = append(rest, c)
		}
	}
	return tails, rest
}

// ungate lets the partitions of tails take records again.
func (t *tracker) ungate(tails []commit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range tails {
		if c.st.gate != nil {
			close(c.st.gate)
			c.st.gate = nil
		}
	}
}

// committed records that the commits succeeded.
func (t *tracker) committed(cs []commit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cs {
		c.st.committed = max(c.st.committed, c.offset)
	}
}

// revokeAll ends the current assignment (a rebalance, or shutdown). With
// keep, the states stay readable for Lag but take no more records or acks.
func (t *tracker) revokeAll(keep bool) {
	t.revoke()
	t.letGo(keep)
}

// revoke starts giving up the current assignment: its partitions take no
// more records, and no batch holding some starts (see withdraw), but acks
// of those in flight still count.
func (t *tracker) revoke() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.parts {
		t.revokeLocked(st)
	}
	t.active = false
}

// letGo ends giving up the assignment revoked: acks no longer count. With
// keep, the states stay readable for Lag.
func (t *tracker) letGo(keep bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tp, st := range t.parts {
		t.revokeLocked(st)
		st.gone = true
		if !keep {
			if l := st.lag(); l > 0 {
				t.left[tp] = l
			}
			delete(t.parts, tp)
		}
	}
	t.active = false
}

func (t *tracker) revokeLocked(st *partState) {
	if st.revoked {
		return
	}
	if st.end >= 0 && !st.complete() {
		t.incomplete--
	}
	st.revoked = true
}

// complete reports whether an assignment is in force and every record below
// the end offsets of its partitions was sent.
func (t *tracker) complete() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active && t.incomplete == 0
}

// drain is complete, remembering, if so, the partitions assigned now as
// read to their end.
func (t *tracker) drain() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active || t.incomplete > 0 {
		return false
	}
	for tp, st := range t.parts {
		if !st.revoked {
			t.drained[tp] = true
		}
	}
	return true
}

// shortOfEnd returns, once reading is over, the partitions drained and
// held to the end (the ones whose states were kept) whose committed offset
// is below their end offset, in topic and partition order.
func (t *tracker) shortOfEnd() []commit {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cs []commit
	for tp, st := range t.parts {
		if t.drained[tp] && st.end >= 0 && st.committed < st.end {
			cs = append(cs, commit{st, st.committed})
		}
	}
	sortCommits(cs)
	return cs
}

// sortCommits sorts cs by topic and partition.
func sortCommits(cs []commit) {
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i].st.tp, cs[j].st.tp
		if a.topic != b.topic {
			return a.topic < b.topic
		}
		return a.part < b.part
	})
}

// held returns the partitions assigned now, not being revoked.
func (t *tracker) held() map[topicPartition]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := make(map[topicPartition]bool, len(t.parts))
	for tp, st := range t.parts {
		if !st.revoked {
			h[tp] = true
		}
	}
	return h
}

// partLag returns lag's figures per partition, in topic and partition
// order.
func (t *tracker) partLag() []monitor.PartitionLag {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]monitor.PartitionLag, 0, len(t.parts)+len(t.left))
	for _, st := range t.parts {
		out = append(out, monitor.PartitionLag{Topic: st.tp.topic, Partition: st.tp.part, Lag: st.lag()})
	}
	for tp, l := range t.left {
		out = append(out, monitor.PartitionLag{Topic: tp.topic, Partition: tp.part, Lag: l})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// lag returns, per topic, how many records of the partitions assigned now
// are not done with: up to the captured end offset with one, else up to the
// latest high watermark; then those of partitions given up, and those of
// others, the lag of partitions read elsewhere, where neither says.
func (t *tracker) lag(others map[topicPartition]int64) map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	lag := make(map[string]int64)
	for _, st := range t.parts {
		lag[st.tp.topic] += st.lag()
	}
	for tp, l := range t.left {
		lag[tp.topic] += l
	}
	for tp, l := range others {
		if _, ok := t.parts[tp]; ok {
			continue
		}
		if _, ok := t.left[tp]; ok {
			continue
		}
		lag[tp.topic] += l
	}
	return lag
}

// lag is how many records of st are not done with: up to the end offset
// with one, else up to the high watermark. t.mu is held.
func (st *partState) lag() int64 {
	target := st.end
	if target < 0 {
		target = max(st.hwm, st.next)
		if st.liveHWM != nil {
			target = max(target, st.liveHWM())
		}
	}
	return max(0, target-st.acked)
}

// revokeParts is revoke for some partitions only: a cooperative rebalance
// takes them and leaves the rest being read.
func (t *tracker) revokeParts(tps ...topicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range tps {
		if st := t.parts[tp]; st != nil {
			t.revokeLocked(st)
		}
	}
}

// letGoParts is letGo for the partitions revokeParts took.
func (t *tracker) letGoParts(tps ...topicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range tps {
		st := t.parts[tp]
		if st == nil {
			continue
		}
		t.revokeLocked(st)
		st.gone = true
		if l := st.lag(); l > 0 {
			t.left[tp] = l
		}
		delete(t.parts, tp)
	}
}
