package cmd

import (
	"os"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka"
	"github.com/spf13/cobra"
)

const kafkaSinkHelp = `Produce each record to the Kafka topic TOPIC, which must exist (batchpipe
never creates topics). Brokers that cannot be reached or a missing topic end
the run before anything is read (exit 69).

A batch is delivered once every record in it is acknowledged by all in-sync
replicas (acks=all). The producer is idempotent: its own retries (with
backoff, for about 20 seconds) write no duplicates. Up to -j batches are in
flight at once (without --exactly-once, 5 unless -j is given, as Kafka's
producers keep five requests in flight), and records reach each partition
in the order read, whatever -j. A record the broker refuses for good
(larger than the topic's max.message.bytes or --max-message-bytes,
invalid) is rejected on its own, dead-lettered (--dead-letter) or counted,
and the rest of its batch is delivered. Records that failed for a passing
reason (no leader, a timeout) are tried again on their own (--retries,
--backoff). While no broker answers (an outage, a restart), a batch is
sent again, the same records under the same producer id and sequence
numbers, until a broker answers or none has for --kafka-timeout (30s):
meanwhile reading waits, and what was read is delivered, in order, once
the brokers are back. Raise --kafka-timeout to ride out longer outages.

Keys: with --key-delimiter D (kcat -K), the bytes before the first D are the
key and the rest the value; a record without D has no key. Records with a
key go to the partition the Java client would choose (--partitioner murmur2,
the default); crc32 is librdkafka's "consistent" partitioner, random ignores
keys. Records without a key go, as with the Java client's sticky
partitioner, to one partition per batch, the next batch to the next
partition.

Records read from Kafka (--topic) keep their key, headers and timestamp
(--keep-meta=false sends the value alone). With --unwrap each record is an
envelope written by --envelope json: its key (null or empty), headers (in
order, duplicates kept), timestamp, partition and value are restored, so a
drain with --envelope json and a replay with --unwrap copy a topic exactly;
the envelope's partition is kept unless --partitioner is given. A record
that is not such an envelope is rejected on its own, with the reason.

With --exactly-once (a Kafka source with --group), each batch is one Kafka
transaction holding its records and the source offsets it completes, with
a transactional id per source partition (batchpipe-GROUP-TOPIC-PARTITION),
so a run after a crash or another member fences the one before. A reader
of TOPIC with isolation.level=read_committed then sees every source record
once. Source and sink must be one cluster; Kafka 2.5 or later.

TLS and SASL are those of the Kafka source: --kafka-tls, --kafka-cacert,
--kafka-sasl, --kafka-user and $BATCHPIPE_KAFKA_PASSWORD.`

const kafkaSinkExamples = `  # a growing log into a topic, keyed by what comes before the first tab
  tail -F app.log | batchpipe -n 1000 -t 1s kafka --brokers localhost:9092 --key-delimiter '\t' logs

  # replay a dead-letter topic into the topic it came from, then stop
  batchpipe --kafka-brokers localhost:9092 --topic orders-dlq --group replay --until-end kafka orders

  # copy a topic, each record once for read_committed readers, whatever crashes
  batchpipe --kafka-brokers localhost:9092 --topic orders --group copier --exactly-once --until-end kafka orders-copy

  # back up a topic and restore it into another, exactly
  batchpipe --kafka-brokers localhost:9092 --topic orders --until-end --envelope json -n 10000 file orders.ndjson
  batchpipe --kafka-brokers localhost:9092 -n 10000 kafka --unwrap orders-restored < orders.ndjson`

// kafkaSinkOptions are the kafka sink's flags.
type kafkaSinkOptions struct {
	brokers         string
	keyDelimiter    string
	partitioner     string
	unwrap          bool
	keepMeta        bool
	compression     string
	maxMessageBytes int
}

func newKafkaCmd(o *options) *cobra.Command {
	var k kafkaSinkOptions
	c := &cobra.Command{
		Use:         "kafka [flags] TOPIC",
		Short:       "Produce the records to a Kafka topic",
		Long:        kafkaSinkHelp,
		Example:     kafkaSinkExamples,
		Annotations: map[string]string{summaryKey: "1,2"},
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return usagef("kafka: give one TOPIC")
			}
			cfg, popts, err := k.config(args[0], c.Flags().Changed("partitioner"))
			if err != nil {
				return err
			}
			if o.kafka.exactlyOnce && o.kafka.enabled() && o.kafka.group != "" { // else refused below
				if k.brokers != "" && k.brokers != o.kafka.brokers {
					return usagef("kafka: --exactly-once commits the source group's offsets in the sink's transactions: source and sink must be one cluster; drop --brokers")
				}
				cfg.TxnGroup = o.kafka.group
				popts.Transactional = true
			}
			if !c.Flags().Changed("parallel") && cfg.TxnGroup == "" {
				// As Kafka's producers keep five requests in flight; the
				// sink keeps each partition's order whatever -j.
				o.parallel = kafka.DefaultParallel
			}
			conn, err := o.sinkConn(k.brokers)
			if err != nil {
				return err
			}
			cfg.Timeout = o.kafka.timeout
			return o.run(openOnly(func(env sinkEnv) (batcher.Sink, error) {
				cfg.Logger = env.log
				return kafka.OpenProducer(conn, popts, cfg)
			}))
		},
	}
	f := c.Flags()
	f.SortFlags = false
	f.StringVar(&k.brokers, "brokers", "", "comma-separated host:port list (default --kafka-brokers, or $"+envBrokers+")")
	f.StringVarP(&k.keyDelimiter, "key-delimiter", "K", "", "the bytes before the first occurrence of this string are the key (\\t, \\0 allowed)")
	f.StringVar(&k.partitioner, "partitioner", kafka.PartitionMurmur2, "place keyed records by murmur2 (the Java client's), crc32 (librdkafka's consistent) or random")
	f.BoolVar(&k.unwrap, "unwrap", false, "each record is an --envelope json object: produce the record it describes")
	f.BoolVar(&k.keepMeta, "keep-meta", true, "records read from Kafka keep their key, headers and timestamp")
	f.StringVar(&k.compression, "compression", "none", "compress record batches: none, gzip, snappy, lz4 or zstd")
	f.IntVar(&k.maxMessageBytes, "max-message-bytes", kafka.DefaultMaxMessageBytes, "refuse records larger than this, and build record batches no larger (at most the topic's max.message.bytes)")
	return c
}

// config checks the flags and returns the sink's and the producer's
// settings.
func (k *kafkaSinkOptions) config(topic string, partitionerSet bool) (kafka.ProducerConfig, kafka.ProducerOptions, error) {
	cfg := kafka.ProducerConfig{Topic: topic, Unwrap: k.unwrap, KeepMeta: k.keepMeta, KeepPartition: k.unwrap && !partitionerSet}
	var popts kafka.ProducerOptions
	if k.keyDelimiter != "" {
		if k.unwrap {
			return cfg, popts, usagef("kafka: --unwrap and --key-delimiter: the envelope holds the key; give one")
		}
		cfg.KeyDelimiter = []byte(unescape(k.keyDelimiter))
	}
	part, err := kafka.KeyPartitioner(k.partitioner)
	if err != nil {
		return cfg, popts, usagef("kafka: --partitioner: %v", err)
	}
	cfg.Partitioner = part
	if err := popts.Compression.UnmarshalText([]byte(k.compression)); err != nil || k.compression == "" {
		return cfg, popts, usagef("kafka: --compression takes none, gzip, snappy, lz4 or zstd, not %q", k.compression)
	}
	if k.maxMessageBytes < 1 {
		return cfg, popts, usagef("kafka: --max-message-bytes must be at least 1, not %d", k.maxMessageBytes)
	}
	popts.MaxMessageBytes = k.maxMessageBytes
	return cfg, popts, nil
}

// unescape turns \t, \n, \r and \0 into the byte they name.
func unescape(s string) string {
	switch s {
	case `\t`:
		return "\t"
	case `\n`:
		return "\n"
	case `\r`:
		return "\r"
	case `\0`:
		return "\x00"
	}
	return s
}

// sinkConn returns the connection settings of the kafka sink: those of the
// source (TLS, SASL, client id), with brokers when given.
func (o *options) sinkConn(brokers string) (*kafka.Conn, error) {
	so := *o
	if brokers != "" {
		so.kafka.brokers = brokers
	} else if so.kafka.brokers == "" && os.Getenv(envBrokers) == "" {
		return nil, usagef("kafka: give --brokers, or --kafka-brokers, or set %s", envBrokers)
	}
	conn, err := so.kafkaConn()
	if err != nil {
		return nil, err
	}
	return conn, nil
}
