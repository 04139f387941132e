package kafkaconn

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// ProducerOptions are the producer settings a user chooses.
type ProducerOptions struct {
	// Compression of record batches; default none.
	Compression sarama.CompressionCodec
	// MaxMessageBytes is the largest record the producer sends, and the
	// largest record batch it builds per partition. Default 1000000, as
	// the Java client's max.request.size and the brokers' default
	// max.message.bytes.
	MaxMessageBytes int
	// Partitioner picks each record's partition; default sarama's hash
	// partitioner.
	Partitioner sarama.PartitionerConstructor
}

// DefaultMaxMessageBytes is ProducerOptions.MaxMessageBytes's default.
const DefaultMaxMessageBytes = 1000000

// ProducerConfig returns the configuration of an idempotent producer: a
// record is acknowledged once every in-sync replica has it (acks=all),
// and the client's own retries write no duplicates and keep the order
// within a partition, which needs one request in flight per broker.
func (c *Conn) ProducerConfig(p ProducerOptions) (*sarama.Config, error) {
	cfg, err := c.Config()
	if err != nil {
		return nil, err
	}
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	// Leader elections and restarts take seconds: retry for about half a
	// minute, backing off, before a record is handed back as not
	// delivered (and the pipeline's own --retries take over).
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.BackoffFunc = func(retries, _ int) time.Duration {
		return min(100*time.Millisecond<<min(retries, 6), 5*time.Second)
	}
	cfg.Producer.Compression = p.Compression
	cfg.Producer.MaxMessageBytes = p.MaxMessageBytes
	if cfg.Producer.MaxMessageBytes <= 0 {
		cfg.Producer.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if p.Partitioner != nil {
		cfg.Producer.Partitioner = p.Partitioner
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return cfg, nil
}

// ConnectProducer connects as Connect does, with ProducerConfig(p).
func (c *Conn) ConnectProducer(p ProducerOptions, topics ...string) (sarama.Client, error) {
	if _, err := c.ProducerConfig(p); err != nil {
		return nil, err
	}
	return c.connect(func() (*sarama.Config, error) { return c.ProducerConfig(p) }, topics)
}

// Partitions returns the number of partitions of topic, or an error that
// names the topic when it does not exist: batchpipe never creates topics,
// so that a typo cannot.
func Partitions(client sarama.Client, topic string) (int, error) {
	parts, err := client.Partitions(topic)
	switch {
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition):
		return 0, fmt.Errorf("topic %q does not exist", topic)
	case err != nil:
		return 0, fmt.Errorf("topic %q: %w", topic, err)
	}
	return len(parts), nil
}
