package kafka

import (
	"errors"
	"fmt"

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
	// Transactional speaks Kafka 2.5 (KIP-447): a transactional producer
	// reads the group's committed offsets with require_stable, which
	// waits for transactions still committing offsets.
	Transactional bool
}

// TransactionalVersion is the protocol version of a transactional
// producer's client.
var TransactionalVersion = sarama.V2_5_0_0

// DefaultMaxMessageBytes is ProducerOptions.MaxMessageBytes's default.
const DefaultMaxMessageBytes = 1000000

// ProducerConfig returns the configuration of a producer's client: acks
// from all in-sync replicas, and the user's options. The Kafka sink builds
// its produce requests itself (idempotent, one in flight per partition);
// the settings of sarama's own producer that it reads are these.
func (c *Conn) ProducerConfig(p ProducerOptions) (*sarama.Config, error) {
	cfg, err := c.Config()
	if err != nil {
		return nil, err
	}
	if p.Transactional && !cfg.Version.IsAtLeast(TransactionalVersion) {
		cfg.Version = TransactionalVersion
	}
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Compression = p.Compression
	cfg.Producer.MaxMessageBytes = p.MaxMessageBytes
	if cfg.Producer.MaxMessageBytes <= 0 {
		cfg.Producer.MaxMessageBytes = DefaultMaxMessageBytes
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
