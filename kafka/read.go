// The read loop: a reader per partition hands Run chunks of records, and
// skips what a partition's end holds that no reader gets (transaction
// markers, aborted records); a watch fails the run when no broker answers
// for --kafka-timeout.

package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
)

// start starts the readers: a partition consumer per partition, or the
// group session loop and its committer; and the broker watch.
func (k *Source) start() {
	k.wg.Go(k.watch)
	if k.group != nil {
		k.wg.Go(k.consumeGroup)
		k.wg.Go(k.commitLoop)
		k.wg.Go(func() {
			for err := range k.group.Errors() {
				// A partition read past retention stops: as without a group.
				var cerr *sarama.ConsumerError
				if errors.As(err, &cerr) && errors.Is(cerr.Err, sarama.ErrOffsetOutOfRange) {
					k.fail(fmt.Errorf("kafka: %s[%d]: %w: records were deleted before they were read",
						cerr.Topic, cerr.Partition, cerr.Err))
					continue
				}
				k.log.Warn("kafka: consumer group", "group", k.cfg.Group, "err", err)
			}
		})
		return
	}
	consumer, err := sarama.NewConsumerFromClient(k.client)
	if err != nil {
		k.fail(fmt.Errorf("kafka: consumer: %w", err))
		return
	}
	k.consumer = consumer
	for _, st := range k.parts {
		if st.complete() {
			continue // nothing below its end offset: nothing to read
		}
		pc, err := consumer.ConsumePartition(st.tp.topic, st.tp.part, st.next)
		if err != nil {
			k.fail(fmt.Errorf("kafka: %s[%d]: consume from offset %d: %w", st.tp.topic, st.tp.part, st.next, err))
			return
		}
		k.wg.Go(func() {
			k.read(k.life, st, pc.Messages(), pc.HighWaterMarkOffset)
			pc.AsyncClose()
		})
		k.wg.Go(func() {
			for err := range pc.Errors() {
				if errors.Is(err.Err, sarama.ErrOffsetOutOfRange) {
					k.fail(fmt.Errorf("kafka: %s[%d]: %w: records were deleted before they were read",
						err.Topic, err.Partition, err.Err))
					continue
				}
				k.log.Warn("kafka: read", "topic", err.Topic, "partition", err.Partition, "err", err.Err)
			}
		})
	}
}

// tailWait is how long a partition read up to an end offset may wait for
// a record before its leader is asked whether any is left below the end.
const tailWait = 500 * time.Millisecond

// read sends the records of one partition to Run in chunks of what is
// ready, until the partition's end offset, msgs closes or ctx is done.
func (k *Source) read(ctx context.Context, st *partState, msgs <-chan *sarama.ConsumerMessage, hwm func() int64) {
	k.track.follow(st, hwm)
	end := st.end    // set once, at assignment
	next := st.start // the offset after the last record seen
	// sarama skips transaction markers, aborted records and compacted
	// offsets without a word: if the last offsets below the end are such,
	// no record ever says the end was reached; without an end, the offset
	// committed would stay short of the high watermark for good, a lag
	// that never clears. So an idle partition asks.
	idle := time.NewTimer(tailWait)
	defer idle.Stop()
	var asked [2]int64 // next and the high watermark of the last fruitless ask
	for {
		var m *sarama.ConsumerMessage
		var ok bool
		select {
		case m, ok = <-msgs:
			if !ok {
				return
			}
		case <-idle.C:
			if end < 0 {
				if to := k.skipTail(st, next, hwm(), &asked); to > next {
					select {
					case k.chunks <- readChunk{st: st, skipTo: to}:
						next = to
					case <-ctx.Done():
						return
					}
				}
				idle.Reset(tailWait)
				continue
			}
			empty, err := k.nothingBelow(st.tp, next, end)
			if err != nil {
				k.log.Debug("kafka: look past the last record read", "topic", st.tp.topic, "partition", st.tp.part,
					"offset", next, "err", err)
			}
			if !empty {
				idle.Reset(tailWait)
				continue
			}
			select {
			case k.chunks <- readChunk{st: st, toEnd: true}:
			case <-ctx.Done():
			}
			return
		case <-ctx.Done():
			return
		}
		c, finished, open := fillChunk(m, msgs, end, &next, k.cfg.Envelope)
		for i := range c.metas {
			c.metas[i].Assignment = st.n // no batch takes records of two assignments
		}
		if len(c.recs) > 0 || finished {
			c.finish()
			select {
			case k.chunks <- readChunk{st: st, recs: c.recs, toEnd: finished}:
			case <-ctx.Done():
				return
			}
		}
		if finished || !open {
			return
		}
		idle.Reset(tailWait)
	}
}

// fillChunk makes a chunk of m and the messages ready after it, up to the
// partition's end, and moves next past them. finished says the end was
// reached; open is false once msgs is closed.
func fillChunk(m *sarama.ConsumerMessage, msgs <-chan *sarama.ConsumerMessage, end int64, next *int64, envelope bool) (c *chunkBuilder, finished, open bool) {
	n := min(len(msgs)+1, maxChunk)
	c = newChunk(n, envelope)
	for {
		if end >= 0 && m.Offset >= end {
			return c, true, true // the offsets before it hold no record
		}
		c.add(m)
		*next = m.Offset + 1
		if end >= 0 && *next >= end {
			return c, true, true
		}
		if len(c.recs) == n {
			return c, false, true
		}
		select {
		case m, open = <-msgs:
			if !open {
				return c, false, false
			}
		default:
			return c, false, true
		}
	}
}

// skipTail returns how far past next, up to the high watermark hwm, a
// partition read without an end holds nothing to read; next if nothing
// or in doubt. It asks the leader once per next and hwm: until either
// moves, the answer stays (an open transaction holds the last stable
// offset back; its end moves the high watermark).
func (k *Source) skipTail(st *partState, next, hwm int64, asked *[2]int64) int64 {
	if hwm <= next || *asked == [2]int64{next, hwm} {
		return next
	}
	to, err := k.emptyTo(st.tp, next, hwm)
	if err != nil {
		k.log.Debug("kafka: look past the last record read", "topic", st.tp.topic, "partition", st.tp.part,
			"offset", next, "err", err)
		return next // asked again at the next idle tick
	}
	if to == next {
		*asked = [2]int64{next, hwm}
	}
	return to
}

// nothingBelow reports whether a partition holds no record to read from
// offset from up to end, asking its leader directly: the offsets between
// may hold only transaction markers, or records compacted away. It reports
// false when in doubt; a record the consumer has yet to deliver is for the
// reader to see.
func (k *Source) nothingBelow(tp topicPartition, from, end int64) (bool, error) {
	to, err := k.emptyTo(tp, from, end)
	return to >= end, err
}

// emptyTo returns how far from offset from, up to end at most, a partition
// holds no record to read, asking its leader directly: from itself if a
// record is there, or in doubt; past transaction markers, records of
// aborted transactions (read_committed) and offsets compacted away.
func (k *Source) emptyTo(tp topicPartition, from, end int64) (int64, error) {
	if from >= end {
		return from, nil
	}
	leader, err := k.client.Leader(tp.topic, tp.part)
	if err != nil {
		return from, err
	}
	committed := k.readCommitted()
	seen := from // every offset from from to seen holds no record to read
	// A long run of markers takes several fetches, each from where the
	// last one's whole batches ended.
	for range maxProbes {
		// Version 10 (Source 2.1) has all a probe needs (sarama's consumer
		// sends 11, for rack awareness), at the consumer's isolation
		// level: under read_committed, records of aborted transactions
		// are skipped, as the consumer skips them.
		req := &sarama.FetchRequest{Version: 10, MaxBytes: probeBytes, Isolation: sarama.ReadUncommitted, SessionEpoch: -1}
		if committed {
			req.Isolation = sarama.ReadCommitted
		}
		req.AddBlock(tp.topic, tp.part, seen, probeBytes, -1)
		resp, err := leader.Fetch(req)
		if err != nil {
			return seen, err
		}
		b := resp.GetBlock(tp.topic, tp.part)
		if b == nil {
			return seen, sarama.ErrIncompleteResponse
		}
		if b.Err != sarama.ErrNoError {
			// Out of range too: records deleted before they were read are
			// the consumer's to report.
			return seen, b.Err
		}
		at := seen
		// As sarama's consumer does: a producer's batches are aborted from
		// the first offset of an aborted transaction to its abort marker.
		aborts := b.AbortedTransactions
		sort.Slice(aborts, func(i, j int) bool { return aborts[i].FirstOffset < aborts[j].FirstOffset })
		aborted := make(map[int64]bool)
		for _, rs := range b.RecordsSet {
			rb := rs.RecordBatch
			if rb == nil {
				return seen, nil // the old message format has no markers
			}
			if rb.PartialTrailingRecord {
				break // cut short by probeBytes: fetch it again
			}
			for len(aborts) > 0 && aborts[0].FirstOffset <= rb.LastOffset() {
				aborted[aborts[0].ProducerID] = true
				aborts = aborts[1:]
			}
			skip := rb.Control || committed && rb.IsTransactional && aborted[rb.ProducerID]
			if rb.Control && len(rb.Records) == 1 && isAbortMarker(rb.Records[0]) {
				delete(aborted, rb.ProducerID)
			}
			if !skip {
				for _, r := range rb.Records {
					if rb.FirstOffset+r.OffsetDelta >= seen {
						return seen, nil
					}
				}
			}
			if seen = max(seen, rb.LastOffset()+1); seen >= end {
				return end, nil
			}
		}
		if seen == at {
			return seen, nil // nothing whole came back: in doubt
		}
	}
	return seen, nil
}

// isAbortMarker reports whether a control record marks the abort of a
// transaction: its key is version (int16) then type (int16), 0 for abort.
func isAbortMarker(r *sarama.Record) bool {
	return len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 0
}

// maxProbes bounds the fetches of one nothingBelow: 4 MiB of markers.
const maxProbes = 64

// probeBytes bounds what nothingBelow fetches: a few markers, or the start
// of the next batch of records.
const probeBytes = 64 << 10

// chunkBuilder turns consumer messages into records. Metadata is allocated
// per chunk, not per record; so is the envelope buffer.
type chunkBuilder struct {
	recs     []batcher.Record
	metas    []batcher.Meta
	envelope bool
	buf      []byte
	ends     []int
}

func newChunk(n int, envelope bool) *chunkBuilder {
	return &chunkBuilder{
		recs:     make([]batcher.Record, 0, n),
		metas:    make([]batcher.Meta, 0, n),
		envelope: envelope,
	}
}

func (c *chunkBuilder) add(m *sarama.ConsumerMessage) {
	c.metas = append(c.metas, batcher.Meta{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Timestamp: m.Timestamp,
	})
	meta := &c.metas[len(c.metas)-1]
	if len(m.Headers) > 0 {
		meta.Headers = make([]batcher.Header, len(m.Headers))
		for i, h := range m.Headers {
			meta.Headers[i] = batcher.Header{Key: string(h.Key), Value: h.Value}
		}
	}
	if !c.envelope {
		c.recs = append(c.recs, batcher.Record{Data: m.Value, Meta: meta})
		return
	}
	c.buf = appendEnvelope(c.buf, meta, m.Key, m.Value, m.Key == nil, m.Value == nil)
	c.ends = append(c.ends, len(c.buf))
	c.recs = append(c.recs, batcher.Record{Meta: meta})
}

// finish points the records at their envelopes, now that the buffer has
// stopped moving.
func (c *chunkBuilder) finish() {
	if !c.envelope {
		return
	}
	start := 0
	for i, end := range c.ends {
		c.recs[i].Data = c.buf[start:end:end]
		start = end
	}
}

// fail stops Run with err, unless it already stopped with another.
func (k *Source) fail(err error) {
	select {
	case k.fatal <- err:
	default:
	}
}

// watch fails Run when no broker has answered for Timeout. Without
// UntilEnd, it also refreshes the high watermarks that lag is measured to.
// A request to a broker that stopped answering waits up to the read
// timeout, longer than the rebalance timeout: the watch does not wait for
// it to tell how long the brokers have been silent.
func (k *Source) watch() {
	every := min(max(k.cfg.Timeout/4, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	warned := false
	answers := make(chan error, 1) // the refresh in progress, if any
	asking := false
	var lastErr error
	for {
		select {
		case <-k.life.Done():
			return
		case err := <-answers:
			asking = false
			if err == nil {
				if warned {
					k.log.Warn("kafka: brokers reachable again")
					warned = false
				}
				last = time.Now()
				continue
			}
			lastErr = err
			if !warned && k.life.Err() == nil {
				k.log.Warn("kafka: brokers unreachable, retrying", "err", err)
				warned = true
			}
		case <-t.C:
			if !asking {
				asking = true
				go func() {
					c, err := k.probeClient()
					if err == nil {
						err = c.RefreshMetadata(k.cfg.Topics...)
					}
					if err == nil && !k.cfg.UntilEnd {
						k.refreshHighWatermarks(c)
					}
					answers <- err
				}()
			}
		}
		if down := time.Since(last); down >= k.cfg.Timeout {
			err := lastErr
			if err == nil {
				err = errors.New("no answer")
			}
			k.fail(fmt.Errorf("kafka: no broker answered for %v (--kafka-timeout): %w", down.Round(time.Second), err))
			return
		}
	}
}

// probeClient returns the probe client, connecting it first if need be.
func (k *Source) probeClient() (sarama.Client, error) {
	if c := k.probe.Load(); c != nil {
		return *c, nil
	}
	c, err := k.sideClient()
	if err != nil {
		return nil, err
	}
	if !k.probe.CompareAndSwap(nil, &c) {
		c.Close()
		return *k.probe.Load(), nil
	}
	if k.life.Err() != nil { // closed meanwhile
		c.Close()
	}
	return c, nil
}

// sideClient connects a client of its own to the brokers the main one
// knows, with its configuration.
func (k *Source) sideClient() (sarama.Client, error) {
	var addrs []string
	for _, b := range k.client.Brokers() {
		addrs = append(addrs, b.Addr())
	}
	return sarama.NewClient(addrs, k.client.Config())
}
