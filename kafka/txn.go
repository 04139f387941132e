package kafka

// Exactly once between topics (--exactly-once, a Kafka source with a
// group, the kafka sink): each batch is one Kafka transaction holding its
// records and the source offset it completes.
//
// Every batch holds records of one source partition. Each source
// partition has a transactional producer of its own, with the id
// batchpipe-GROUP-TOPIC-PARTITION, so whoever delivers the partition next
// (this run after a retry, the next run after a crash, another member
// after a rebalance) calls InitProducerId with the same id: the broker
// then finishes or aborts the last transaction of that id and bumps the
// epoch, so a fenced producer's EndTxn fails and its batch is not counted
// delivered. After InitProducerId, the group's committed offset of the
// partition (fetched with require_stable, so no transaction is pending)
// says exactly which records earlier transactions wrote: records below it
// are skipped, whoever read them and however the batches were cut. A
// transaction is:
//
//	AddPartitionsToTxn (the output partitions), Produce (transactional,
//	sequence numbers from 0 for each new epoch), AddOffsetsToTxn (the
//	group), TxnOffsetCommit (offset last+1), EndTxn (commit).
//
// Any error abandons the transaction (an abort is sent; the next
// InitProducerId aborts it anyway) and the next attempt starts from
// InitProducerId again.
//
// Within a run, the transactions of one source partition commit in the
// order its batches were formed: a batch waits (turns) until every
// earlier batch of its partition is settled, and if one was not delivered
// (failed, abandoned), later ones are not committed past it.
//
// The source commits no offsets itself in this mode (see
// SourceConfig.offsetsInSink): a commit of its own, made a moment
// after a transaction committed further but before the batch was acked,
// would move the group's offset back, and the records between would be
// written again after a crash.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
)

// DefaultTxnTimeout is how long the broker lets a transaction stay open
// before it aborts it: the longest a read_committed reader of the output
// waits behind a transaction whose producer died, if no run starts again.
const DefaultTxnTimeout = time.Minute

// Tries of a request the broker answers busy: up to 20 s in all; up to
// 2 s for a committed offset not yet stable.
const (
	busyTries   = 100
	stableTries = 16
)

// Protocol versions of the transaction requests: those of Kafka 2.1, the
// oldest a Kafka 4 broker answers.
const (
	initProducerIDVersion  = 1
	addPartitionsVersion   = 1
	addOffsetsVersion      = 1
	txnOffsetCommitVersion = 2
	endTxnVersion          = 1
	offsetFetchVersion     = 7 // require_stable
)

// txnSink is the transactional state of a Producer.
type txnSink struct {
	group   string
	timeout time.Duration
	turns   *turns
	// owns is the source's word on whether a batch's partition is still
	// this member's (Session.Wire). A new producer id, which fences
	// whoever holds the partition now, is asked for only for a batch it
	// owns: a member that lost the partition would otherwise fence its
	// new owner, and be fenced back, in turn.
	owns func(b *batcher.Batch) bool

	mu    sync.Mutex
	parts map[string]*txnPartition // by source "topic/partition"
}

// txnPartition is the transactional producer of one source partition.
type txnPartition struct {
	mu    sync.Mutex // held through a batch's transaction
	id    string     // transactional id
	pid   int64
	epoch int16
	valid bool            // pid and epoch are current; done and seqs hold
	done  int64           // the group's committed offset: records below are written
	seqs  map[int32]int32 // next sequence number per output partition
}

// TxnID is the transactional id of a source partition's producer.
func TxnID(group, topic string, partition int32) string {
	return "batchpipe-" + group + "-" + topic + "-" + strconv.Itoa(int(partition))
}

func partKey(topic string, partition int32) string {
	return topic + "/" + strconv.Itoa(int(partition))
}

func (t *txnSink) partition(s batcher.Span) *txnPartition {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := partKey(s.Topic, s.Partition)
	tp := t.parts[key]
	if tp == nil {
		tp = &txnPartition{id: TxnID(t.group, s.Topic, s.Partition)}
		t.parts[key] = tp
	}
	return tp
}

// plan is the pipeline's Plan hook with exactly once to Kafka (Session.Wire):
// it notes the order batches are formed in, which is the order their
// transactions commit in.
func (k *Producer) plan(b *batcher.Batch) error {
	if k.txn == nil {
		return nil
	}
	if s, ok := b.Span(); ok {
		k.txn.turns.plan(s.ID(), partKey(s.Topic, s.Partition))
	}
	return nil
}

// onSettled learns each batch's fate (Session.Wire): the next batch of its
// partition may go, unless this one was neither delivered, dead-lettered
// nor withdrawn.
func (k *Producer) onSettled(s batcher.Settlement) {
	if k.txn == nil {
		return
	}
	switch s.Outcome {
	case batcher.Delivered, batcher.Partial, batcher.DeadLettered, batcher.Withdrawn:
		k.txn.turns.settled(s.Batch.ID, nil)
	default:
		k.txn.turns.settled(s.Batch.ID, fmt.Errorf("batch %s was not delivered (%s)", s.Batch.ID, s.Outcome))
	}
}

// deliverTxn delivers b as one transaction, with the offset it completes.
func (k *Producer) deliverTxn(ctx context.Context, b *batcher.Batch) error {
	span, ok := b.Span()
	if !ok {
		return batcher.Fatal(fmt.Errorf("kafka sink: %s: exactly once: the batch holds records of several partitions", b))
	}
	if err := k.txn.turns.wait(ctx, span.ID(), partKey(span.Topic, span.Partition)); ctx.Err() != nil {
		return fmt.Errorf("kafka sink: %s: waiting for the earlier batches of %s[%d]: %w", b, span.Topic, span.Partition, context.Cause(ctx))
	} else if err != nil {
		// Committing this one would commit past an earlier batch's
		// records, which the next run must read again.
		return batcher.Fatal(fmt.Errorf("kafka sink: %s: not committed: an earlier batch of %s[%d] was not: %w", b, span.Topic, span.Partition, err))
	}
	tp := k.txn.partition(span)
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var wait backoff
	defer wait.stop()
	for attempt := 1; ; attempt++ {
		if owns := k.txn.owns; !tp.valid && owns != nil && !owns(b) {
			// Its new owner fenced us, or will: a new producer id
			// would fence it in turn. The pipeline withdraws the
			// batch.
			return fmt.Errorf("kafka sink: %s: %s[%d] is no longer this member's", b, span.Topic, span.Partition)
		}
		err := k.transact(ctx, tp, b, span)
		if err == nil {
			return nil
		}
		if batcher.IsPermanent(err) {
			return err
		}
		tp.valid = false // the next attempt fences this one, and aborts what it left
		if attempt >= k.attempts || ctx.Err() != nil {
			return fmt.Errorf("kafka sink: %s: transaction %s: %w", b, tp.id, err)
		}
		if k.cfg.Logger != nil {
			k.cfg.Logger.Debug("kafka sink: transaction again", "batch", b.String(), "txn", tp.id, "attempt", attempt, "wait", wait.delay(), "err", err)
		}
		if !wait.wait(ctx) {
			return fmt.Errorf("kafka sink: %s: transaction %s: %w", b, tp.id, err)
		}
	}
}

// transact makes one attempt at b's transaction.
func (k *Producer) transact(ctx context.Context, tp *txnPartition, b *batcher.Batch, span batcher.Span) error {
	if !tp.valid {
		if err := k.initTxn(ctx, tp, span); err != nil {
			return err
		}
	}
	// Records an earlier transaction wrote, whoever made it, are skipped.
	from := 0
	for from < b.Len() && b.Meta(from).Offset < tp.done {
		from++
	}
	if from == b.Len() {
		return nil
	}
	parts, err := Partitions(k.client, k.cfg.Topic)
	if err != nil {
		return err
	}
	sticky := int32(k.sticky.Add(1) % uint32(parts))
	chunks, rejected := k.chunks(b, from, sticky, int32(parts))
	if len(rejected) > 0 {
		// The offset committed covers the whole batch: writing the rest
		// without it would leave it behind the offset, lost. Not a
		// RejectError (%v): the whole batch fails, not these records.
		return batcher.Permanent(fmt.Errorf("%v; with --exactly-once the whole batch is not written", &batcher.RejectError{Records: rejected}))
	}
	coord, err := k.client.TransactionCoordinator(tp.id)
	if err != nil {
		return fmt.Errorf("transaction coordinator: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			k.abort(tp)
		}
	}()
	if err := k.addPartitions(ctx, coord, tp, chunks); err != nil {
		return err
	}
	if err := k.produceChunks(ctx, tp, b, chunks); err != nil {
		return err
	}
	if err := k.addOffsets(ctx, coord, tp); err != nil {
		return err
	}
	if err := k.commitTxnOffset(tp, span); err != nil {
		return err
	}
	if err := k.endTxn(coord, tp); err != nil {
		return err
	}
	ok = true
	tp.done = span.Last + 1
	return nil
}

// addPartitions adds the output partitions of chunks to tp's
// transaction.
func (k *Producer) addPartitions(ctx context.Context, coord *sarama.Broker, tp *txnPartition, chunks []*chunk) error {
	var outs []int32
	seen := make(map[int32]bool)
	for _, c := range chunks {
		if !seen[c.partition] {
			seen[c.partition] = true
			outs = append(outs, c.partition)
		}
	}
	// Right after the previous EndTxn the broker is still writing its
	// markers, and answers CONCURRENT_TRANSACTIONS for a moment.
	return retryBusy(ctx, busyTries, func() (sarama.KError, error) {
		resp, err := coord.AddPartitionsToTxn(&sarama.AddPartitionsToTxnRequest{Version: addPartitionsVersion,
			TransactionalID: tp.id, ProducerID: tp.pid, ProducerEpoch: tp.epoch, TopicPartitions: map[string][]int32{k.cfg.Topic: outs}})
		if err != nil {
			k.lostCoordinator(coord, tp.id)
			return 0, fmt.Errorf("add partitions: %w", err)
		}
		var first *sarama.PartitionError
		for _, pe := range resp.Errors[k.cfg.Topic] {
			if pe.Err != sarama.ErrNoError && (first == nil || first.Err == sarama.ErrOperationNotAttempted) {
				first = pe
			}
		}
		if first != nil {
			k.coordinatorError(first.Err, tp.id)
			return first.Err, fmt.Errorf("add partition %d: %w", first.Partition, first.Err)
		}
		return 0, nil
	})
}

// produceChunks produces chunks in tp's transaction, a goroutine per
// output partition sending its chunks in order, and moves the partitions'
// sequence numbers past them once all are written.
func (k *Producer) produceChunks(ctx context.Context, tp *txnPartition, b *batcher.Batch, chunks []*chunk) error {
	byPartition := make(map[int32][]*chunk)
	for _, c := range chunks {
		byPartition[c.partition] = append(byPartition[c.partition], c)
	}
	errs := make(chan error, len(byPartition))
	var sends sync.WaitGroup
	for p, cs := range byPartition {
		seq := tp.seqs[p]
		sends.Go(func() {
			for _, c := range cs {
				if err := k.produceChunkTxn(ctx, tp, b, c, seq); err != nil {
					errs <- err
					return
				}
				seq += int32(len(c.recs))
			}
		})
	}
	sends.Wait()
	close(errs)
	var first error
	for err := range errs {
		if refusedForGood(err) {
			// As without transactions, the broker will refuse it
			// whatever the attempts; the offset committed covers the
			// whole batch, so the whole batch fails, at once.
			return batcher.Permanent(fmt.Errorf("kafka sink: %s: %w; with --exactly-once the whole batch is not written", b, err))
		}
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	for _, c := range chunks {
		tp.seqs[c.partition] += int32(len(c.recs))
	}
	return nil
}

// addOffsets adds the group's offsets to tp's transaction.
func (k *Producer) addOffsets(ctx context.Context, coord *sarama.Broker, tp *txnPartition) error {
	return retryBusy(ctx, busyTries, func() (sarama.KError, error) {
		resp, err := coord.AddOffsetsToTxn(&sarama.AddOffsetsToTxnRequest{Version: addOffsetsVersion,
			TransactionalID: tp.id, ProducerID: tp.pid, ProducerEpoch: tp.epoch, GroupID: k.txn.group})
		if err != nil {
			k.lostCoordinator(coord, tp.id)
			return 0, fmt.Errorf("add offsets of group %q: %w", k.txn.group, err)
		}
		if resp.Err != sarama.ErrNoError {
			k.coordinatorError(resp.Err, tp.id)
			return resp.Err, fmt.Errorf("add offsets of group %q: %w", k.txn.group, resp.Err)
		}
		return 0, nil
	})
}

// endTxn commits tp's transaction.
func (k *Producer) endTxn(coord *sarama.Broker, tp *txnPartition) error {
	endResp, err := coord.EndTxn(&sarama.EndTxnRequest{Version: endTxnVersion,
		TransactionalID: tp.id, ProducerID: tp.pid, ProducerEpoch: tp.epoch, TransactionResult: true})
	if err == nil && endResp.Err != sarama.ErrNoError {
		k.coordinatorError(endResp.Err, tp.id)
		err = endResp.Err
	} else if err != nil {
		// Whether it committed is unknown: the next InitProducerId
		// finishes it, and the offset fetched then tells.
		k.lostCoordinator(coord, tp.id)
	}
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// commitTxnOffset adds the source offset span completes to the
// transaction, at the group's coordinator.
func (k *Producer) commitTxnOffset(tp *txnPartition, span batcher.Span) error {
	group := k.txn.group
	coord, err := k.client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("group %q coordinator: %w", group, err)
	}
	resp, err := coord.TxnOffsetCommit(&sarama.TxnOffsetCommitRequest{Version: txnOffsetCommitVersion,
		TransactionalID: tp.id, GroupID: group, ProducerID: tp.pid, ProducerEpoch: tp.epoch,
		Topics: map[string][]*sarama.PartitionOffsetMetadata{
			span.Topic: {{Partition: span.Partition, Offset: span.Last + 1, LeaderEpoch: -1}},
		}})
	if err != nil {
		coord.Close()
		k.client.RefreshCoordinator(group)
		return fmt.Errorf("group %q: commit offset %d of %s[%d]: %w", group, span.Last+1, span.Topic, span.Partition, err)
	}
	for _, pe := range resp.Topics[span.Topic] {
		if pe.Err != sarama.ErrNoError {
			if errors.Is(pe.Err, sarama.ErrNotCoordinatorForConsumer) || errors.Is(pe.Err, sarama.ErrConsumerCoordinatorNotAvailable) {
				k.client.RefreshCoordinator(group)
			}
			return fmt.Errorf("group %q: commit offset %d of %s[%d]: %w", group, span.Last+1, span.Topic, span.Partition, pe.Err)
		}
	}
	return nil
}

// produceChunkTxn writes c, a chunk of b, to its partition in tp's
// transaction from sequence number seq. A chunk the broker finds too large
// is sent again a record at a time, as it judges a record batch whole, so
// that only a record too large by itself is refused.
func (k *Producer) produceChunkTxn(ctx context.Context, tp *txnPartition, b *batcher.Batch, c *chunk, seq int32) error {
	p := c.partition
	err := k.produceTxn(ctx, tp, p, seq, c.recs)
	if err != nil && len(c.recs) > 1 && isTooLarge(err) {
		for j, r := range c.recs {
			if err := k.produceTxn(ctx, tp, p, seq+int32(j), []*sarama.Record{r}); err != nil {
				m := b.Meta(c.index[j])
				return fmt.Errorf("produce to %s[%d]: record %s[%d] offset %d: %w", k.cfg.Topic, p, m.Topic, m.Partition, m.Offset, err)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("produce to %s[%d]: %w", k.cfg.Topic, p, err)
	}
	return nil
}

// produceTxn writes recs to output partition p in tp's transaction, with
// first sequence number seq, retrying what may pass: a retry carries the
// same sequence, so the broker writes it once.
func (k *Producer) produceTxn(ctx context.Context, tp *txnPartition, p, seq int32, recs []*sarama.Record) error {
	rb := recordBatch(recs, k.codec)
	rb.IsTransactional = true
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = tp.pid, tp.epoch, seq
	var wait backoff
	defer wait.stop()
	for attempt := 1; ; attempt++ {
		err := k.send(p, rb, &tp.id)
		switch {
		case err == nil, attempt > 1 && errors.Is(err, sarama.ErrDuplicateSequenceNumber):
			return nil
		case refusedForGood(err), errors.Is(err, sarama.ErrOutOfOrderSequenceNumber), errors.Is(err, sarama.ErrUnknownProducerID),
			errors.Is(err, sarama.ErrInvalidProducerEpoch), errors.Is(err, sarama.ErrProducerFenced),
			errors.Is(err, sarama.ErrDuplicateSequenceNumber), errors.Is(err, sarama.ErrInvalidTxnState),
			errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed):
			return err // the transaction is lost: it starts again
		}
		if attempt >= k.attempts || ctx.Err() != nil {
			return err
		}
		if !wait.wait(ctx) {
			return err
		}
	}
}

// initTxn fences every earlier producer of tp's id (the broker finishes
// or aborts its transaction first), then reads the group's committed
// offset of the partition: what earlier transactions wrote.
func (k *Producer) initTxn(ctx context.Context, tp *txnPartition, span batcher.Span) error {
	if err := retryBusy(ctx, busyTries, func() (sarama.KError, error) {
		coord, err := k.client.TransactionCoordinator(tp.id)
		if err != nil {
			return 0, fmt.Errorf("transaction coordinator: %w", err)
		}
		resp, err := coord.InitProducerID(&sarama.InitProducerIDRequest{Version: initProducerIDVersion,
			TransactionalID: &tp.id, TransactionTimeout: k.txn.timeout, ProducerID: -1, ProducerEpoch: -1})
		if err != nil {
			k.lostCoordinator(coord, tp.id)
			return 0, fmt.Errorf("init producer id: %w", err)
		}
		if resp.Err != sarama.ErrNoError {
			k.coordinatorError(resp.Err, tp.id)
			return resp.Err, fmt.Errorf("init producer id: %w", resp.Err)
		}
		tp.pid, tp.epoch = resp.ProducerID, resp.ProducerEpoch
		return 0, nil
	}); err != nil {
		return err
	}
	// require_stable makes the broker answer UNSTABLE_OFFSET_COMMIT while
	// a transaction with offsets of the group is pending. Ours is over:
	// InitProducerId finished it. A broker whose group coordinator applies
	// a finished transaction's offsets a moment later (before Kafka 4)
	// answers so for that moment, which the stable tries wait out. kfake
	// answers so while any transaction holds offsets of the group, those
	// of other partitions too, whose producers may wait for this batch's
	// worker: past the stable tries, the offset is read as it stands.
	group := k.txn.group
	stable := true
	fetch := func() (sarama.KError, error) {
		coord, err := k.client.Coordinator(group)
		if err != nil {
			return 0, fmt.Errorf("group %q coordinator: %w", group, err)
		}
		req := &sarama.OffsetFetchRequest{Version: offsetFetchVersion, ConsumerGroup: group, RequireStable: stable}
		req.AddPartition(span.Topic, span.Partition)
		resp, err := coord.FetchOffset(req)
		if err != nil {
			coord.Close()
			k.client.RefreshCoordinator(group)
			return 0, fmt.Errorf("group %q: fetch committed offset: %w", group, err)
		}
		kerr := resp.Err
		blk := resp.GetBlock(span.Topic, span.Partition)
		if kerr == sarama.ErrNoError && blk == nil {
			return 0, fmt.Errorf("group %q: no committed offset in the answer for %s[%d]", group, span.Topic, span.Partition)
		}
		if kerr == sarama.ErrGroupIDNotFound {
			tp.done = -1 // no group, no offsets (kfake; Kafka answers -1)
			return 0, nil
		}
		if kerr == sarama.ErrNoError {
			kerr = blk.Err
		}
		if kerr != sarama.ErrNoError {
			if errors.Is(kerr, sarama.ErrNotCoordinatorForConsumer) || errors.Is(kerr, sarama.ErrConsumerCoordinatorNotAvailable) {
				k.client.RefreshCoordinator(group)
			}
			return kerr, fmt.Errorf("group %q: committed offset of %s[%d]: %w", group, span.Topic, span.Partition, kerr)
		}
		tp.done = blk.Offset // -1 when none: nothing to skip
		return 0, nil
	}
	err := retryBusy(ctx, stableTries, fetch)
	if errors.Is(err, sarama.ErrUnstableOffsetCommit) {
		stable = false
		err = retryBusy(ctx, busyTries, fetch)
	}
	if err != nil {
		return err
	}
	tp.seqs = make(map[int32]int32)
	tp.valid = true
	return nil
}

// retryBusy calls f until it succeeds, fails with an error other than the
// broker being busy with the id (a transaction finishing, offsets
// pending, a coordinator loading or moving), or ctx ends. A transaction
// the broker is aborting or committing takes a moment.
func retryBusy(ctx context.Context, max int, f func() (sarama.KError, error)) error {
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	d := 2 * time.Millisecond
	for i := 1; ; i++ {
		kerr, err := f()
		if err == nil {
			return nil
		}
		busy := kerr == sarama.ErrConcurrentTransactions || kerr == sarama.ErrUnstableOffsetCommit ||
			kerr == sarama.ErrOffsetsLoadInProgress || kerr == sarama.ErrNotCoordinatorForConsumer ||
			kerr == sarama.ErrConsumerCoordinatorNotAvailable
		if !busy || i >= max {
			return err
		}
		t.Reset(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			return err
		}
		d = min(2*d, 200*time.Millisecond)
	}
}

// abort ends tp's open transaction, if the broker still takes it from
// this epoch, so that read_committed readers of the output need not wait
// for the transaction timeout. Best effort: the next InitProducerId of
// the id aborts it anyway.
func (k *Producer) abort(tp *txnPartition) {
	tp.valid = false
	coord, err := k.client.TransactionCoordinator(tp.id)
	if err != nil {
		return
	}
	coord.EndTxn(&sarama.EndTxnRequest{Version: endTxnVersion,
		TransactionalID: tp.id, ProducerID: tp.pid, ProducerEpoch: tp.epoch, TransactionResult: false})
}

// lostCoordinator forgets a transaction coordinator whose connection
// failed.
func (k *Producer) lostCoordinator(coord *sarama.Broker, id string) {
	coord.Close()
	k.client.RefreshTransactionCoordinator(id)
}

// coordinatorError looks the coordinator up again when it moved.
func (k *Producer) coordinatorError(kerr sarama.KError, id string) {
	if kerr == sarama.ErrNotCoordinatorForConsumer || kerr == sarama.ErrConsumerCoordinatorNotAvailable {
		k.client.RefreshTransactionCoordinator(id)
	}
}
