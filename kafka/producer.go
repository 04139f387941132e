package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
)

// ProducerConfig says what the Kafka sink makes of a record.
type ProducerConfig struct {
	Topic string
	// Partitioner places records with a key: Murmur2Partition (the
	// default), CRC32Partition or a random one.
	Partitioner func(key []byte, partitions int32) int32
	// KeyDelimiter, when set, splits a record at its first occurrence:
	// the key before, the value after (kcat -K). A record without it has
	// no key.
	KeyDelimiter []byte
	// Unwrap reads each record as an envelope (--envelope json) and
	// produces the record it describes.
	Unwrap bool
	// KeepPartition, with Unwrap, sends a record to the envelope's
	// partition; else the partitioner places it.
	KeepPartition bool
	// KeepMeta gives a record read from Kafka its key, headers and
	// timestamp.
	KeepMeta bool
	// TxnGroup, if set, makes each batch one transaction that also commits
	// the source offset it completes for this consumer group (exactly
	// once from Kafka; see txn.go). Batches must hold one source
	// partition each.
	TxnGroup string
	// TxnTimeout is the broker's bound on an open transaction; default
	// DefaultTxnTimeout.
	TxnTimeout time.Duration
	// Logger, if set, gets a debug line per transaction attempted again.
	Logger *slog.Logger
	// Brokers are the addresses the client was made with. sarama drops a
	// broker that fails a request, its seeds too, and after an outage may
	// have none left ("run out of available brokers"): the client is then
	// seeded with these again.
	Brokers []string
	// Timeout is how long a record batch keeps being tried while no broker
	// answers (--kafka-timeout); default DefaultTimeout. Failures
	// while brokers answer are tried produceAttempts times.
	Timeout time.Duration
}

// DefaultTimeout is ProducerConfig.Timeout's default, as
// --kafka-timeout's.
const DefaultTimeout = 30 * time.Second

// Producer produces each batch to a topic, and returns once every
// record is acknowledged by all in-sync replicas (acks=all), or has failed.
//
// It builds the produce requests itself, one record batch per partition
// (more when they would pass --max-message-bytes), rather than handing
// each record through sarama's producer goroutines, which cost more than
// the rest of batchpipe together. It is idempotent as the Java client is:
// a producer id from the broker and a sequence number per partition, so a
// request retried after a lost answer is written once. Up to five record
// batches a partition are in flight at once (the first of a producer id
// alone), in the order the batches were formed, and settled in that order
// (inflight.go), so order within a partition is kept.
//
// Records the broker refuses for good (too large, invalid) are rejected
// on their own; records that failed for a reason that may pass (no
// leader, a timeout) after the retries here are rejected to be tried again
// by the pipeline; the rest of the batch counts as delivered.
//
// Records without a key, as with the Java client's sticky partitioner, all
// go to one partition per batch, the next partition for the next batch.
type Producer struct {
	cfg      ProducerConfig
	client   sarama.Client
	codec    sarama.CompressionCodec
	maxBytes int
	attempts int // per record batch and delivery
	sticky   atomic.Uint32

	idMu sync.Mutex
	id   producerID

	partsMu sync.Mutex
	parts   map[int32]*partitionState

	order *sendOrder
	conns conns
	sends sync.WaitGroup // record batches in flight, which a Deliver may have given up waiting for

	txn *txnSink // with TxnGroup
}

// producerID is the identity the broker deduplicates by; gen counts the
// ids this producer has had, so that partitions know to restart their
// sequence numbers.
type producerID struct {
	id    int64
	epoch int16
	gen   int
	valid bool
}

var (
	_ batcher.Sink    = (*Producer)(nil)
	_ batcher.Closer  = (*Producer)(nil)
	_ batcher.Settler = (*Producer)(nil)
)

// Retries of a record batch within one delivery: about 20 seconds in all,
// enough for a leader election.
const (
	produceAttempts   = 10
	produceBackoff    = 100 * time.Millisecond
	produceMaxBackoff = 5 * time.Second
	// batchOverhead is a record batch's header; recordOverhead bounds a
	// record's own (lengths, attributes, deltas as varints).
	batchOverhead  = 61
	recordOverhead = 24
)

// NewProducer checks that the topic exists and takes client, made
// with Conn.ProducerConfig, which it closes.
func NewProducer(client sarama.Client, cfg ProducerConfig) (*Producer, error) {
	if _, err := Partitions(client, cfg.Topic); err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	if cfg.Partitioner == nil {
		cfg.Partitioner = Murmur2Partition
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	conf := client.Config()
	k := &Producer{cfg: cfg, client: client, codec: conf.Producer.Compression,
		maxBytes: conf.Producer.MaxMessageBytes, attempts: produceAttempts, parts: make(map[int32]*partitionState),
		order: newSendOrder()}
	if cfg.TxnGroup != "" {
		if cfg.TxnTimeout <= 0 {
			cfg.TxnTimeout = DefaultTxnTimeout
		}
		k.txn = &txnSink{group: cfg.TxnGroup, timeout: cfg.TxnTimeout, turns: newTurns(), parts: make(map[string]*txnPartition)}
	}
	return k, nil
}

// OpenProducer connects to the cluster of conn, with the producer's
// settings popts, and opens a Producer to cfg.Topic there. Its errors are
// Errors: brokers that cannot be reached or a missing topic are
// Unavailable, credentials or TLS they refuse Refused.
func OpenProducer(conn *Conn, popts ProducerOptions, cfg ProducerConfig) (*Producer, error) {
	client, err := conn.ConnectProducer(popts, cfg.Topic)
	if err != nil {
		return nil, connectError(fmt.Errorf("kafka sink: %w", err))
	}
	cfg.Brokers = conn.Brokers
	p, err := NewProducer(client, cfg)
	if err != nil {
		client.Close()
		return nil, unavailable(err) // the topic missing
	}
	return p, nil
}

// A chunk is records of one partition sent as one record batch.
type chunk struct {
	partition int32
	index     []int // each record's index in the delivered batch
	recs      []*sarama.Record
}

// A chunkResult says how each record of a chunk fared.
type chunkResult struct {
	index []int
	errs  []error // one per record, or one for all; nil: delivered
}

// Deliver produces b's records. Its record batches are sent after those of
// every earlier batch, without waiting for their answers: with -j above 1,
// batches follow one another down the connection as the Java client's
// requests do, in order. Batches are ordered by their Seq, as the pipeline
// numbers them; deliveries at once of one Seq, which it never makes, are
// in no order between themselves.
func (k *Producer) Deliver(ctx context.Context, b *batcher.Batch) error {
	if k.txn != nil {
		return k.deliverTxn(ctx, b)
	}
	parts, err := Partitions(k.client, k.cfg.Topic)
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	if err := k.order.wait(ctx, b.Seq); err != nil {
		return fmt.Errorf("kafka sink: %s: waiting for the batches before it: %w", b, err)
	}
	sticky := int32(k.sticky.Add(1) % uint32(parts))
	chunks, rejected := k.chunks(b, 0, sticky, int32(parts))

	results := make(chan chunkResult, len(chunks))
	for _, c := range chunks {
		fl, err := k.start(ctx, c, b.Seq)
		if err != nil {
			results <- chunkResult{c.index, []error{err}}
			continue
		}
		k.sends.Go(func() { results <- k.finish(ctx, fl, b.Seq) })
	}
	k.order.pass(b.Seq)
	for range chunks {
		var res chunkResult
		select {
		case res = <-results:
		case <-ctx.Done():
			return fmt.Errorf("kafka sink: %s: %w", b, context.Cause(ctx))
		}
		for j, i := range res.index {
			var err error
			if len(res.errs) == 1 {
				err = res.errs[0]
			} else if len(res.errs) > 1 {
				err = res.errs[j]
			}
			if err != nil {
				rejected = append(rejected, batcher.Rejected{
					Index: i,
					Err:   fmt.Errorf("kafka sink: %s: produce to %s: %w", b.Pos(i), k.cfg.Topic, err),
					Again: !refusedForGood(err),
				})
			}
		}
	}
	if len(rejected) > 0 {
		// In batch order, so that records tried again keep theirs.
		slices.SortFunc(rejected, func(a, b batcher.Rejected) int { return a.Index - b.Index })
		return &batcher.RejectError{Records: rejected}
	}
	return nil
}

// Settled lets the batches after seq send, if it never did, and those
// behind it if it owed records.
func (k *Producer) Settled(seq int64) {
	k.order.pass(seq)
	k.settled(seq)
}

// chunks turns b's records from index from on into record batches, one
// or more per partition, and lists the records refused before sending.
func (k *Producer) chunks(b *batcher.Batch, from int, sticky, parts int32) ([]*chunk, []batcher.Rejected) {
	n := b.Len()
	// Our own copy of the records: if ctx ends first, a request may still
	// be on its way after Deliver has returned the batch.
	buf := bytes.Clone(b.Bytes())
	slab := make([]sarama.Record, n)
	now := time.Now()
	var rejected []batcher.Rejected
	var chunks []*chunk
	open := make(map[int32]*chunk) // the chunk being filled, per partition
	size := make(map[int32]int)
	start := 0
	for i := range n {
		end := start + len(b.Record(i))
		r := &slab[i]
		rec := buf[start:end:end]
		start = end + 1
		if i < from {
			continue
		}
		p, ts, err := k.record(r, rec, b.Meta(i), sticky, parts)
		if err != nil {
			rejected = append(rejected, batcher.Rejected{Index: i, Err: fmt.Errorf("kafka sink: %s: %w", b.Pos(i), err)})
			continue
		}
		if ts.IsZero() {
			ts = now
		}
		r.TimestampDelta = time.Duration(ts.UnixMilli()) * time.Millisecond // made relative in produce
		sz := recordOverhead + len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			sz += len(h.Key) + len(h.Value) + 10
		}
		c := open[p]
		if c == nil || size[p]+sz > k.maxBytes-batchOverhead {
			c = &chunk{partition: p}
			open[p], size[p] = c, 0
			chunks = append(chunks, c)
		}
		c.index = append(c.index, i)
		c.recs = append(c.recs, r)
		size[p] += sz
	}
	return chunks, rejected
}

// resendChunk sends c again as one record batch, with st.mu held. A batch
// the broker finds too large is sent again a record at a time, as it
// judges a batch whole.
func (k *Producer) resendChunk(ctx context.Context, st *partitionState, c *chunk) chunkResult {
	err := k.resend(ctx, st, c.partition, c.recs)
	if err == nil || len(c.recs) == 1 || !isTooLarge(err) {
		return chunkResult{c.index, []error{err}}
	}
	errs := make([]error, len(c.recs))
	for j, r := range c.recs {
		errs[j] = k.resend(ctx, st, c.partition, []*sarama.Record{r})
		if errs[j] != nil && !refusedForGood(errs[j]) {
			for l := j + 1; l < len(errs); l++ {
				errs[l] = fmt.Errorf("not sent: an earlier record failed: %w", errs[j])
			}
			break
		}
	}
	return chunkResult{c.index, errs}
}

// resend writes recs to partition p as one record batch, from sequence
// number st.seq, waiting for each answer and retrying with backoff what may
// pass; st.mu is held. recs were sent before, so the broker's finding them
// a duplicate means they are written. The records' TimestampDelta holds
// their timestamp since the epoch.
func (k *Producer) resend(ctx context.Context, st *partitionState, p int32, recs []*sarama.Record) error {
	rb := recordBatch(recs, k.codec)
	var wait backoff
	defer wait.stop()
	attempt := 0         // those a broker answered, or that failed otherwise
	var silent time.Time // since when no broker has answered; zero: one did
	for {
		id, err := k.producerID()
		if err == nil {
			if st.gen != id.gen {
				st.restart(id.gen)
			}
			rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = id.id, id.epoch, st.seq
			err = k.send(p, rb, nil)
			switch {
			case err == nil, errors.Is(err, sarama.ErrDuplicateSequenceNumber):
				// A duplicate is this very batch, written by an earlier
				// send whose answer was lost: no other records ever had
				// its producer id and sequence.
				st.seq += int32(len(recs))
				st.written = time.Now()
				return nil
			case refusedForGood(err):
				return err // nothing written: the sequence stays
			case errors.Is(err, sarama.ErrOutOfOrderSequenceNumber), errors.Is(err, sarama.ErrUnknownProducerID),
				errors.Is(err, sarama.ErrInvalidProducerEpoch):
				// The broker's idea of the sequence is not ours: start
				// again with a new producer id.
				k.resetProducerID(id.gen)
			}
			// Otherwise the next attempt sends the same batch with the
			// same sequence, which the broker writes once.
		}
		// Giving up, whether the broker wrote the batch is unknown: a new
		// producer id restarts the sequences, so that no later batch can
		// be taken for a duplicate of this one.
		giveUp := func() error {
			if id.valid {
				k.resetProducerID(id.gen)
			}
			return err
		}
		// While no broker answers (an outage, a restart), attempts go on
		// until none has for the timeout: the same record batch, the same
		// producer id and sequence, so that it is written once.
		switch {
		case !unanswered(err):
			silent = time.Time{}
			if attempt++; attempt >= k.attempts {
				return giveUp()
			}
		case silent.IsZero():
			silent = time.Now()
		case time.Since(silent) >= k.cfg.Timeout:
			err = fmt.Errorf("no broker answered for %v (--kafka-timeout): %w", time.Since(silent).Round(time.Second), err)
			return giveUp()
		}
		if ctx.Err() != nil || !wait.wait(ctx) {
			return giveUp()
		}
	}
}

// unanswered reports whether err says that no broker answered: the
// connection failed, or the client knows of none to ask.
func unanswered(err error) bool {
	var ce *connError
	return errors.As(err, &ce) || errors.Is(err, sarama.ErrOutOfBrokers)
}

// reseed gives the client its brokers again when err says it has none
// left: sarama drops each broker that fails a request (InitProducerID
// drops its seeds too, for good), and after an outage would have nobody to
// ask once the brokers are back.
func (k *Producer) reseed(err error) {
	if errors.Is(err, sarama.ErrOutOfBrokers) && len(k.cfg.Brokers) > 0 {
		k.client.RefreshBrokers(k.cfg.Brokers)
	}
}

// backoff waits between attempts, from produceBackoff doubling up to
// produceMaxBackoff, on one timer. The zero value is ready; stop it when
// done.
type backoff struct {
	timer *time.Timer
	next  time.Duration
}

// delay is the wait the next call to wait makes.
func (b *backoff) delay() time.Duration {
	if b.next == 0 {
		return produceBackoff
	}
	return b.next
}

// wait waits the next delay; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.delay()
	b.next = min(2*d, produceMaxBackoff)
	if b.timer == nil {
		b.timer = time.NewTimer(d)
	} else {
		b.timer.Reset(d)
	}
	select {
	case <-b.timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *backoff) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

// recordBatch makes recs one record batch. The records' TimestampDelta
// holds their timestamp since the epoch; they are copied, as a record may
// be sent again alone, with deltas of its own.
func recordBatch(recs []*sarama.Record, codec sarama.CompressionCodec) *sarama.RecordBatch {
	first, last := recs[0].TimestampDelta, recs[0].TimestampDelta
	for _, r := range recs {
		first, last = min(first, r.TimestampDelta), max(last, r.TimestampDelta)
	}
	rb := &sarama.RecordBatch{
		Version: 2, Codec: codec, CompressionLevel: sarama.CompressionLevelDefault,
		LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp:  time.UnixMilli(int64(first / time.Millisecond)),
		MaxTimestamp:    time.UnixMilli(int64(last / time.Millisecond)),
		Records:         make([]*sarama.Record, len(recs)),
	}
	for j, r := range recs {
		c := *r // r may be sent again alone: its deltas are this batch's
		c.OffsetDelta = int64(j)
		c.TimestampDelta = r.TimestampDelta - first
		rb.Records[j] = &c
	}

	return rb
}

// send makes one produce request of rb to the leader of partition p, and
// waits for the answer. txnID, if set, is the transaction rb belongs to.
func (k *Producer) send(p int32, rb *sarama.RecordBatch, txnID *string) error {
	broker, err := k.client.Leader(k.cfg.Topic, p)
	if err != nil {
		k.reseed(err)
		k.client.RefreshMetadata(k.cfg.Topic)
		return err
	}
	conn := k.conns.ref(broker)
	resp, err := broker.Produce(k.produceRequest(p, rb, txnID))
	if err != nil {
		err = &connError{err}
	} else {
		err = k.blockError(broker, resp, p)
	}
	k.afterError(p, conn, err)
	return err
}

func (k *Producer) produceRequest(p int32, rb *sarama.RecordBatch, txnID *string) *sarama.ProduceRequest {
	req := &sarama.ProduceRequest{RequiredAcks: sarama.WaitForAll, Timeout: 10000, Version: 7, TransactionalID: txnID}
	req.AddBatch(k.cfg.Topic, p, rb)
	return req
}

// blockError is the broker's answer for partition p in resp.
func (k *Producer) blockError(broker *sarama.Broker, resp *sarama.ProduceResponse, p int32) error {
	block := resp.GetBlock(k.cfg.Topic, p)
	switch {
	case block == nil:
		return fmt.Errorf("broker %d: no answer for partition %d", broker.ID(), p)
	case block.Err != sarama.ErrNoError:
		return block.Err
	}
	return nil
}

// producerID returns the current producer id, asking the broker for one
// if there is none.
func (k *Producer) producerID() (producerID, error) {
	k.idMu.Lock()
	defer k.idMu.Unlock()
	if !k.id.valid {
		resp, err := k.client.InitProducerID()
		if err == nil && resp.Err != sarama.ErrNoError {
			err = resp.Err
		}
		if err != nil {
			k.reseed(err)
			return producerID{}, fmt.Errorf("producer id: %w", err)
		}
		k.id = producerID{id: resp.ProducerID, epoch: resp.ProducerEpoch, gen: k.id.gen + 1, valid: true}
	}
	return k.id, nil
}

// resetProducerID drops producer id gen, if it is still the current one.
func (k *Producer) resetProducerID(gen int) {
	k.idMu.Lock()
	defer k.idMu.Unlock()
	if k.id.gen == gen {
		k.id.valid = false
	}
}

func (k *Producer) partition(p int32) *partitionState {
	k.partsMu.Lock()
	defer k.partsMu.Unlock()
	st := k.parts[p]
	if st == nil {
		st = &partitionState{changed: make(chan struct{})}
		k.parts[p] = st
	}
	return st
}

func isTooLarge(err error) bool {
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge)
}

// refusedForGood reports whether the broker will refuse a record whatever
// the number of attempts.
func refusedForGood(err error) bool {
	for _, e := range []error{
		sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidRecord, sarama.ErrMessageSetSizeTooLarge,
		sarama.ErrInvalidTimestamp, sarama.ErrTopicAuthorizationFailed, sarama.ErrClusterAuthorizationFailed,
		sarama.ErrUnsupportedVersion, sarama.ErrUnsupportedForMessageFormat, sarama.ErrPolicyViolation,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// record fills r with record rec of metadata meta, and returns its
// partition and timestamp.
func (k *Producer) record(r *sarama.Record, rec []byte, meta *batcher.Meta, sticky, parts int32) (int32, time.Time, error) {
	p := int32(-1) // by key
	var ts time.Time
	r.Value = rec
	switch {
	case k.cfg.Unwrap:
		e, err := parseEnvelope(rec)
		if err != nil {
			return 0, ts, err
		}
		r.Key, r.Value, ts = e.Key, e.Value, e.Timestamp
		r.Headers = headers(e.Headers)
		if k.cfg.KeepPartition && e.Partition >= 0 {
			if e.Partition >= parts {
				return 0, ts, fmt.Errorf("envelope partition %d: topic %s has %d partitions", e.Partition, k.cfg.Topic, parts)
			}
			p = e.Partition
		}
	case k.cfg.KeyDelimiter != nil:
		if i := bytes.Index(rec, k.cfg.KeyDelimiter); i >= 0 {
			r.Key, r.Value = rec[:i:i], rec[i+len(k.cfg.KeyDelimiter):]
		}
		if meta != nil && k.cfg.KeepMeta {
			r.Headers, ts = headers(meta.Headers), meta.Timestamp
		}
	case meta != nil && k.cfg.KeepMeta:
		r.Key, r.Headers, ts = meta.Key, headers(meta.Headers), meta.Timestamp
	}
	if size := len(r.Key) + len(r.Value); size > k.maxBytes {
		return 0, ts, fmt.Errorf("record of %d bytes is larger than the largest the producer sends (%d bytes, --max-message-bytes)", size, k.maxBytes)
	}
	switch {
	case p >= 0:
	case r.Key != nil:
		p = k.cfg.Partitioner(r.Key, parts)
	default:
		p = sticky
	}
	return p, ts, nil
}

func headers(hs []batcher.Header) []*sarama.RecordHeader {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*sarama.RecordHeader, len(hs))
	slab := make([]sarama.RecordHeader, len(hs))
	for i, h := range hs {
		slab[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		out[i] = &slab[i]
	}
	return out
}

// Close waits for requests still out, then closes the client.
func (k *Producer) Close() error {
	k.sends.Wait()
	if err := k.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		return fmt.Errorf("kafka sink: close: %w", err)
	}
	return nil
}
