package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
)

// Headers added to every dead-lettered record, beside its own.
const (
	HeaderError           = "batchpipe-error"
	HeaderAttempts        = "batchpipe-attempts"
	HeaderSourceTopic     = "batchpipe-source-topic"
	HeaderSourcePartition = "batchpipe-source-partition"
	HeaderSourceOffset    = "batchpipe-source-offset"
	HeaderBatchID         = "batchpipe-batch-id" // the batch's id, when of one partition
)

// DeadLetter produces records that could not be delivered to a Kafka
// topic: the record as the sink was given it (the envelope with --envelope
// json), with its key and headers when it came from Kafka, plus headers
// saying why and where from. It shares the source's client, and so its
// connection.
type DeadLetter struct {
	topic    string
	producer sarama.SyncProducer
}

var (
	_ batcher.DeadLetter = (*DeadLetter)(nil)
	_ batcher.Closer     = (*DeadLetter)(nil)
)

// NewDeadLetter checks that topic exists and opens a producer on
// client. The client's config must have Producer.Return.Successes set.
func NewDeadLetter(client sarama.Client, topic string) (*DeadLetter, error) {
	if topic == "" {
		return nil, errors.New("kafka dead letter: no topic after kafka:")
	}
	if _, err := Partitions(client, topic); err != nil {
		return nil, fmt.Errorf("kafka dead letter: %w", err)
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("kafka dead letter: %w", err)
	}
	return &DeadLetter{topic: topic, producer: p}, nil
}

// Write produces b's records and returns once every in-sync replica has
// them.
func (d *DeadLetter) Write(ctx context.Context, b *batcher.Batch, reason error) error {
	msgs := make([]*sarama.ProducerMessage, b.Len())
	why := []byte(reason.Error())
	attempts := []byte(strconv.Itoa(b.Attempt))
	for i := range msgs {
		m := &sarama.ProducerMessage{Topic: d.topic, Value: sarama.ByteEncoder(b.Record(i))}
		var hs []sarama.RecordHeader
		if meta := b.Meta(i); meta != nil {
			if meta.Key != nil {
				m.Key = sarama.ByteEncoder(meta.Key)
			}
			hs = make([]sarama.RecordHeader, 0, len(meta.Headers)+5)
			for _, h := range meta.Headers {
				hs = append(hs, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
			}
			hs = append(hs,
				sarama.RecordHeader{Key: []byte(HeaderSourceTopic), Value: []byte(meta.Topic)},
				sarama.RecordHeader{Key: []byte(HeaderSourcePartition), Value: strconv.AppendInt(nil, int64(meta.Partition), 10)},
				sarama.RecordHeader{Key: []byte(HeaderSourceOffset), Value: strconv.AppendInt(nil, meta.Offset, 10)},
			)
		}
		m.Headers = append(hs,
			sarama.RecordHeader{Key: []byte(HeaderError), Value: why},
			sarama.RecordHeader{Key: []byte(HeaderAttempts), Value: attempts},
		)
		if b.ID != "" {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(HeaderBatchID), Value: []byte(b.ID)})
		}
		msgs[i] = m
	}
	if err := d.producer.SendMessages(msgs); err != nil {
		return fmt.Errorf("kafka dead letter: produce %d records to %s: %w", len(msgs), d.topic, err)
	}
	return nil
}

// Close stops the producer; the client stays open.
func (d *DeadLetter) Close() error {
	if err := d.producer.Close(); err != nil {
		return fmt.Errorf("kafka dead letter: %w", err)
	}
	return nil
}
