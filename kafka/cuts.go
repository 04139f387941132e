package kafka

// Exactly once: where batches are cut, stored in Kafka before delivery.
//
// Every batch holds records of one partition. Before a new batch is
// queued, plan commits, for its partition, the offset delivered so
// far together with metadata listing the ends of every batch cut beyond
// it, this one included: "bp1:" and the distances between successive ends,
// from the committed offset ("bp1:999,1000,1000" is [c, c+999],
// [c+1000, c+1999], [c+2000, c+2999]). The offset commit is the one thing
// a group member on any machine reads when it takes the partition over,
// and it is fenced by the group generation, so a member that lost the
// partition cannot write it. Every later commit (the periodic one, at
// rebalance, at exit) writes the ends at or past its offset again.
//
// When a partition is assigned, the ends are read back; the records up to
// each are marked (Meta.PlanEnd) and the aggregator cuts exactly there,
// whatever -n, -b, -t or -j say now. Only past the last end does it cut
// anew. A side topic would hold the same and cost a produce and a read per
// batch plus compaction to set up; the offset metadata costs one commit
// per batch and nothing to set up.
//
// The metadata is bounded (the broker's offset.metadata.max.bytes, 4096
// by default): a new cut waits, which pauses reading, while the ends
// listed would not fit, until deliveries move the committed offset on.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
)

// cutsPrefix starts the offset metadata that lists planned cuts; the
// version lets a later format be told apart.
const cutsPrefix = "bp1:"

// maxCutsMeta keeps the metadata under the broker's default
// offset.metadata.max.bytes (4096).
const maxCutsMeta = 4000

// cutStore holds, per partition assigned, the ends of the batches cut but
// maybe not yet committed past.
type cutStore struct {
	mu    sync.Mutex
	parts map[topicPartition]*partCuts // of the partition's current state
	room  chan struct{}                // an ack came: the committed offset may move on

	// conn is a connection of its own to the group coordinator, guarded
	// by Kafka.mu. On the client's, shared with the consumer, a commit
	// waits behind the fetches sent before it: 2-3 ms a batch, not 0.1.
	conn *sarama.Broker
}

type partCuts struct {
	st   *partState
	ends []int64 // inclusive end offsets, ascending
	mark int     // ends[mark] is the next end the records read reach
}

func newCutStore() *cutStore {
	return &cutStore{parts: make(map[topicPartition]*partCuts), room: make(chan struct{}, 1)}
}

// acked wakes a cut waiting for room in the metadata.
func (c *cutStore) acked() {
	select {
	case c.room <- struct{}{}:
	default:
	}
}

// set records the ends read back for a partition just assigned.
func (c *cutStore) set(st *partState, ends []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parts[st.tp] = &partCuts{st: st, ends: ends}
}

// get returns the cuts of st, if st is its partition's current state; a
// state replaced at a rebalance has none. c.mu is held.
func (c *cutStore) get(st *partState) *partCuts {
	if pc := c.parts[st.tp]; pc != nil && pc.st == st {
		return pc
	}
	return nil
}

// markPlanned marks the records of a chunk that fall in planned batches.
func (c *cutStore) markPlanned(st *partState, recs []batcher.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.get(st)
	if pc == nil {
		return
	}
	for i := range recs {
		m := recs[i].Meta
		for pc.mark < len(pc.ends) && pc.ends[pc.mark] < m.Offset {
			pc.mark++
		}
		if pc.mark < len(pc.ends) {
			m.PlanEnd = pc.ends[pc.mark] + 1
		}
	}
}

// metadata returns the commit metadata for offset: the ends at or past it.
// It drops the ends below, which no commit needs again.
func (c *cutStore) metadata(st *partState, offset int64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.get(st)
	if pc == nil {
		return ""
	}
	drop := 0
	for drop < len(pc.ends) && pc.ends[drop] < offset && drop < pc.mark {
		drop++
	}
	pc.ends, pc.mark = pc.ends[drop:], pc.mark-drop
	return encodeCuts(offset, pc.ends)
}

// encodeCuts writes ends, all at or past offset, as "bp1:" and distances.
func encodeCuts(offset int64, ends []int64) string {
	var b strings.Builder
	b.WriteString(cutsPrefix)
	prev := offset - 1
	for _, e := range ends {
		if e < offset {
			continue
		}
		if prev >= offset {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(e-prev, 10))
		prev = e
	}
	return b.String()
}

// decodeCuts reads back the ends from metadata committed with offset. Other
// metadata (none, or another tool's) plans nothing.
func decodeCuts(offset int64, meta string) ([]int64, error) {
	rest, ok := strings.CutPrefix(meta, cutsPrefix)
	if !ok || rest == "" {
		return nil, nil
	}
	var ends []int64
	prev := offset - 1
	for _, f := range strings.Split(rest, ",") {
		d, err := strconv.ParseInt(f, 10, 64)
		if err != nil || d < 1 {
			return nil, fmt.Errorf("planned cuts %q in the offset metadata: %q is not a distance", meta, f)
		}
		prev += d
		ends = append(ends, prev)
	}
	return ends, nil
}

// loadCuts reads back the planned cuts of the partitions just assigned.
// k.mu is held; st is each partition's new state.
func (k *Source) loadCuts(states map[topicPartition]*partState) error {
	if k.cuts == nil || len(states) == 0 {
		return nil
	}
	claims := make(map[string][]int32)
	for tp := range states {
		claims[tp.topic] = append(claims[tp.topic], tp.part)
	}
	coord, err := k.client.Coordinator(k.cfg.Group)
	if err != nil {
		return fmt.Errorf("kafka: group %q coordinator: %w", k.cfg.Group, err)
	}
	resp, err := coord.FetchOffset(sarama.NewOffsetFetchRequest(k.client.Config().Version, k.cfg.Group, claims))
	if err == nil && resp.Err != sarama.ErrNoError {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("kafka: group %q: fetch planned cuts: %w", k.cfg.Group, err)
	}
	for tp, st := range states {
		b := resp.GetBlock(tp.topic, tp.part)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset < 0 {
			k.cuts.set(st, nil)
			continue
		}
		if b.Offset != st.start {
			// Committed by someone else since Setup read it: not ours.
			return fmt.Errorf("kafka: %s[%d]: committed offset moved from %d to %d while being assigned", tp.topic, tp.part, st.start, b.Offset)
		}
		ends, err := decodeCuts(b.Offset, b.Metadata)
		if err != nil {
			return fmt.Errorf("kafka: %s[%d]: %w", tp.topic, tp.part, err)
		}
		k.cuts.set(st, ends)
		if len(ends) > 0 {
			k.log.Debug("kafka: planned cuts", "topic", tp.topic, "partition", tp.part, "from", b.Offset, "ends", ends)
		}
	}
	return nil
}

// commitMetadata is the metadata committed with offset for st: the planned
// cuts at or past it with exactly once, else none.
func (k *Source) commitMetadata(st *partState, offset int64) string {
	if k.cuts == nil {
		return ""
	}
	return k.cuts.metadata(st, offset)
}

// plan stores the cut of a batch just formed, before it is delivered:
// it is the pipeline's Plan hook with --exactly-once. One offset commit
// per batch; it waits while the cuts listed would not fit the metadata.
// The error wraps batcher.ErrNotOwned when the partition is no longer
// this member's: its new owner reads the records again.
func (k *Source) plan(b *batcher.Batch) error {
	span, ok := b.Span()
	if !ok {
		return errors.New("kafka: exactly once: a batch holds records of several partitions")
	}
	for {
		wait, err := k.planBatch(b, span)
		if wait == 0 {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-k.cuts.room:
		case <-t.C:
		case <-k.life.Done():
			t.Stop()
			return fmt.Errorf("kafka: %s[%d]: closing: %w", span.Topic, span.Partition, batcher.ErrNotOwned)
		}
		t.Stop()
	}
}

// generationRetry is how soon a cut refused while a cooperative rebalance
// moves the generation is tried again: the member learns the new one
// within a round trip or two.
const generationRetry = 20 * time.Millisecond

// planBatch tries once; wait, unless 0, says how long to wait for another
// try, or less if an ack comes: the commit interval while the metadata has
// no room yet; a moment while a cooperative rebalance moves the
// generation, as the aggregator waits meanwhile, for every partition.
func (k *Source) planBatch(b *batcher.Batch, span batcher.Span) (wait time.Duration, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	notOwned := fmt.Errorf("kafka: %s[%d]: partition revoked: %w", span.Topic, span.Partition, batcher.ErrNotOwned)
	st := k.track.get(span.Topic, span.Partition)
	if k.sess == nil || k.closing || st == nil || !k.track.holds(st, b.Meta(0)) {
		return 0, notOwned
	}
	offset := k.track.ackedOf(st)
	k.cuts.mu.Lock()
	pc := k.cuts.get(st)
	if pc == nil {
		pc = &partCuts{st: st}
		k.cuts.parts[st.tp] = pc
	}
	if n := len(pc.ends); n > 0 && pc.ends[n-1] >= span.First {
		k.cuts.mu.Unlock()
		return 0, fmt.Errorf("kafka: %s[%d]: batch %d-%d overlaps the cut at %d", span.Topic, span.Partition, span.First, span.Last, pc.ends[n-1])
	}
	pc.ends = append(pc.ends, span.Last)
	pc.mark = len(pc.ends) // the records are read: no later record falls before
	k.cuts.mu.Unlock()
	undo := func() {
		k.cuts.mu.Lock()
		defer k.cuts.mu.Unlock()
		pc.ends = pc.ends[:len(pc.ends)-1]
		pc.mark = min(pc.mark, len(pc.ends))
	}
	meta := k.cuts.metadata(st, offset)
	if len(meta) > maxCutsMeta {
		undo()
		return k.cfg.CommitInterval, nil
	}
	req := k.newCommitRequest(k.sess)
	req.AddBlockWithLeaderEpoch(span.Topic, span.Partition, offset, -1, 0, meta)
	coord, err := k.cutsConn()
	if err != nil {
		undo()
		return 0, err
	}
	resp, err := coord.CommitOffset(req)
	if err != nil {
		undo()
		k.closeCutsConn()
		k.client.RefreshCoordinator(k.cfg.Group)
		return 0, fmt.Errorf("kafka: group %q: store the cut of %s: %w", k.cfg.Group, span.ID(), err)
	}
	kerr, found := resp.Errors[span.Topic][span.Partition]
	switch {
	case !found:
		undo()
		return 0, fmt.Errorf("kafka: group %q: store the cut of %s: no answer", k.cfg.Group, span.ID())
	case k.coop && (errors.Is(kerr, sarama.ErrIllegalGeneration) || errors.Is(kerr, sarama.ErrRebalanceInProgress)):
		// A cooperative rebalance moved the generation before sarama
		// knew: the partition is still this member's unless it is
		// revoked, which the next try sees. Given back, its batch would
		// leave a hole the reader has passed, and the cuts after it
		// would not be the ones delivered.
		undo()
		return min(k.cfg.CommitInterval, generationRetry), nil
	case errors.Is(kerr, sarama.ErrIllegalGeneration), errors.Is(kerr, sarama.ErrUnknownMemberId),
		errors.Is(kerr, sarama.ErrRebalanceInProgress), errors.Is(kerr, sarama.ErrFencedInstancedId):
		undo()
		return 0, notOwned
	case kerr != sarama.ErrNoError:
		undo()
		if errors.Is(kerr, sarama.ErrNotCoordinatorForConsumer) || errors.Is(kerr, sarama.ErrConsumerCoordinatorNotAvailable) {
			k.client.RefreshCoordinator(k.cfg.Group)
		}
		return 0, fmt.Errorf("kafka: group %q: store the cut of %s: %w", k.cfg.Group, span.ID(), kerr)
	}
	k.track.committed([]commit{{st, offset}})
	k.cutsStored.Add(1)
	return 0, nil
}

// cutsConn returns the connection for cuts, opening it to the coordinator
// when there is none or the coordinator moved. k.mu is held.
func (k *Source) cutsConn() (*sarama.Broker, error) {
	coord, err := k.client.Coordinator(k.cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("kafka: group %q coordinator: %w", k.cfg.Group, err)
	}
	if c := k.cuts.conn; c != nil && c.Addr() == coord.Addr() {
		return c, nil
	}
	k.closeCutsConn()
	c := sarama.NewBroker(coord.Addr())
	if err := c.Open(k.client.Config()); err != nil {
		return nil, fmt.Errorf("kafka: group %q: connect to coordinator %s: %w", k.cfg.Group, coord.Addr(), err)
	}
	k.cuts.conn = c
	return c, nil
}

// closeCutsConn closes the connection for cuts, if open. k.mu is held.
func (k *Source) closeCutsConn() {
	if k.cuts != nil && k.cuts.conn != nil {
		k.cuts.conn.Close()
		k.cuts.conn = nil
	}
}

// CutsStored returns how many batch cuts were committed before delivery.
func (k *Source) CutsStored() int64 { return k.cutsStored.Load() }

// holds reports whether st is current and has m among its records sent and
// not yet done with.
func (t *tracker) holds(st *partState, m *batcher.Meta) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !st.revoked && t.parts[st.tp] == st && st.find(m) >= 0
}

// ackedOf returns the offset below which every record of st sent is done
// with: what may be committed.
func (t *tracker) ackedOf(st *partState) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(st.acked, st.committed)
}
