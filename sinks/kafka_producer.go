package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/envelope"
	"github.com/batchpipe/batchpipe/internal/kafkaconn"
)

// KafkaProducerConfig says what the Kafka sink makes of a record.
type KafkaProducerConfig struct {
	Topic string
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
}

// KafkaProducer produces each batch to a topic, and returns once every
// record is acknowledged by all in-sync replicas, or has failed. Records
// the broker refuses for good (too large, invalid) are rejected on their
// own; records that failed for a reason that may pass (no leader, a
// timeout) are rejected to be tried again; the rest of the batch counts as
// delivered.
//
// Records with a key are placed by the client's partitioner (murmur2 as
// the Java client, by default). Records without a key, as the Java
// client's sticky partitioner does, all go to one partition per batch, the
// next partition for the next batch.
type KafkaProducer struct {
	cfg      KafkaProducerConfig
	client   sarama.Client
	producer sarama.SyncProducer
	maxBytes int
	sticky   atomic.Uint32

	sends sync.WaitGroup // SendMessages calls a Deliver gave up waiting for
}

var (
	_ batcher.Sink   = (*KafkaProducer)(nil)
	_ batcher.Closer = (*KafkaProducer)(nil)
)

// NewKafkaProducer checks that the topic exists and opens a producer on
// client, which must have been made with kafkaconn's ProducerConfig. The
// producer closes the client.
func NewKafkaProducer(client sarama.Client, cfg KafkaProducerConfig) (*KafkaProducer, error) {
	if _, err := kafkaconn.Partitions(client, cfg.Topic); err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	return &KafkaProducer{cfg: cfg, client: client, producer: p, maxBytes: client.Config().Producer.MaxMessageBytes}, nil
}

// Deliver produces b's records.
func (k *KafkaProducer) Deliver(ctx context.Context, b *batcher.Batch) error {
	n := b.Len()
	parts, err := kafkaconn.Partitions(k.client, k.cfg.Topic)
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	sticky := int32(k.sticky.Add(1) % uint32(parts))
	// Our own copy of the records: if ctx ends first, the client may still
	// be sending them after Deliver has returned the batch.
	buf := bytes.Clone(b.Bytes())
	slab := make([]sarama.ProducerMessage, n)
	msgs := make([]*sarama.ProducerMessage, 0, n)
	index := make([]int, 0, n) // index[j]: msgs[j]'s record in b
	var rejected []batcher.Rejected
	start := 0
	for i := range n {
		end := start + len(b.Record(i))
		m := &slab[i]
		if err := k.message(m, buf[start:end:end], b.Meta(i), sticky, int32(parts)); err != nil {
			rejected = append(rejected, batcher.Rejected{Index: i, Err: fmt.Errorf("kafka sink: %s: %w", b.Pos(i), err)})
		} else {
			msgs = append(msgs, m)
			index = append(index, i)
		}
		start = end + 1
	}

	failed, err := k.send(ctx, msgs...)
	if err != nil {
		return fmt.Errorf("kafka sink: %s: %w", b, err)
	}
	if len(failed) > 0 {
		at := make(map[*sarama.ProducerMessage]int, len(msgs))
		for j, m := range msgs {
			at[m] = index[j]
		}
		tooLarge := 0
		for _, pe := range failed {
			if isTooLarge(pe.Err) {
				tooLarge++
			}
		}
		for _, pe := range failed {
			err := pe.Err
			if tooLarge > 1 && isTooLarge(err) {
				// The broker judges a whole record batch: send each alone
				// to learn which were too large.
				if err = k.sendAlone(ctx, pe.Msg); err == nil {
					continue
				}
			}
			i := at[pe.Msg]
			rejected = append(rejected, batcher.Rejected{
				Index: i,
				Err:   fmt.Errorf("kafka sink: %s: produce to %s: %w", b.Pos(i), k.cfg.Topic, err),
				Again: !refusedForGood(err),
			})
		}
	}
	if len(rejected) > 0 {
		return &batcher.RejectError{Records: rejected}
	}
	return nil
}

// send produces msgs and returns those that failed, or ctx's error if it
// ends first.
func (k *KafkaProducer) send(ctx context.Context, msgs ...*sarama.ProducerMessage) (sarama.ProducerErrors, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	done := make(chan error, 1)
	k.sends.Go(func() { done <- k.producer.SendMessages(msgs) })
	select {
	case err := <-done:
		var pe sarama.ProducerErrors
		if errors.As(err, &pe) {
			return pe, nil
		}
		if err != nil {
			// Not about messages: say so for every one.
			pe = make(sarama.ProducerErrors, len(msgs))
			for j, m := range msgs {
				pe[j] = &sarama.ProducerError{Msg: m, Err: err}
			}
		}
		return pe, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// sendAlone produces one message that failed with others.
func (k *KafkaProducer) sendAlone(ctx context.Context, m *sarama.ProducerMessage) error {
	retry := &sarama.ProducerMessage{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers,
		Timestamp: m.Timestamp, Partition: m.Partition}
	failed, err := k.send(ctx, retry)
	switch {
	case err != nil:
		return err
	case len(failed) > 0:
		return failed[0].Err
	}
	return nil
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

// message fills m with record rec of metadata meta.
func (k *KafkaProducer) message(m *sarama.ProducerMessage, rec []byte, meta *batcher.Meta, sticky, parts int32) error {
	m.Topic = k.cfg.Topic
	m.Partition = -1 // by key
	var key []byte
	value := rec
	switch {
	case k.cfg.Unwrap:
		r, err := envelope.Parse(rec)
		if err != nil {
			return err
		}
		key, value, m.Timestamp = r.Key, r.Value, r.Timestamp
		m.Headers = headers(r.Headers)
		if k.cfg.KeepPartition && r.Partition >= 0 {
			if r.Partition >= parts {
				return fmt.Errorf("envelope partition %d: topic %s has %d partitions", r.Partition, k.cfg.Topic, parts)
			}
			m.Partition = r.Partition
		}
	case k.cfg.KeyDelimiter != nil:
		if i := bytes.Index(rec, k.cfg.KeyDelimiter); i >= 0 {
			key, value = rec[:i:i], rec[i+len(k.cfg.KeyDelimiter):]
		}
		if meta != nil && k.cfg.KeepMeta {
			m.Headers, m.Timestamp = headers(meta.Headers), meta.Timestamp
		}
	case meta != nil && k.cfg.KeepMeta:
		key, m.Headers, m.Timestamp = meta.Key, headers(meta.Headers), meta.Timestamp
	}
	if key != nil {
		m.Key = sarama.ByteEncoder(key)
	} else if m.Partition < 0 {
		m.Partition = sticky
	}
	if value != nil {
		m.Value = sarama.ByteEncoder(value)
	}
	if size := len(key) + len(value); size > k.maxBytes {
		return fmt.Errorf("record of %d bytes is larger than the largest the producer sends (%d bytes, --max-message-bytes)", size, k.maxBytes)
	}
	return nil
}

func headers(hs []batcher.Header) []sarama.RecordHeader {
	if len(hs) == 0 {
		return nil
	}
	out := make([]sarama.RecordHeader, len(hs))
	for i, h := range hs {
		out[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
	}
	return out
}

// Close waits for what is still being sent, then closes the producer and
// the client.
func (k *KafkaProducer) Close() error {
	err := k.producer.Close()
	k.sends.Wait()
	if cerr := k.client.Close(); err == nil && cerr != nil && !errors.Is(cerr, sarama.ErrClosedClient) {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("kafka sink: close: %w", err)
	}
	return nil
}
