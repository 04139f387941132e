// Command kafka-dev runs a local in-process Kafka cluster (franz-go's kfake)
// for trying batchpipe's Kafka mode and for benchmarks, with no broker
// installed:
//
//	go run ./tools/kafka-dev -topic demo -seed testdata/sample.ndjson
//
// It prints "kafka-dev: listening on HOST:PORT" once the cluster is up and
// "kafka-dev: ready" once the topics are seeded, then runs until
// interrupted. Nothing is kept on disk unless -data-dir is given.
//
// With -brokers it starts no cluster: it creates and seeds the topics on
// the running one named (a real broker: see tools/kafka-real), says the
// same, and waits the same, so a script can use either.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/internal/kafkareal"
	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9092", "listen address; port 0 picks a free one")
	topic := flag.String("topic", "demo", "topics to create, comma-separated; -seed and -records fill the first")
	partitions := flag.Int("partitions", 4, "partitions of the topic")
	seed := flag.String("seed", "", "produce the lines of this file to the topic, round-robin over partitions")
	records := flag.Int("records", 0, "produce this many generated records to the topic")
	size := flag.Int("size", 100, "bytes in each generated record")
	dataDir := flag.String("data-dir", "", "keep the cluster's data in this directory across restarts")
	brokers := flag.String("brokers", "", "start no cluster: create and seed the topics on this running one")
	flag.Parse()
	var err error
	if *brokers != "" {
		err = onBrokers(*brokers, *topic, int32(*partitions), *seed, *records, *size)
	} else {
		err = run(*addr, *topic, int32(*partitions), *seed, *records, *size, *dataDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-dev:", err)
		os.Exit(1)
	}
}

func run(addr, topic string, partitions int32, seed string, records, size int, dataDir string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("-addr %q: bad port", addr)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, strings.Split(topic, ",")...),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
	}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	fmt.Fprintf(os.Stderr, "kafka-dev: listening on %s (topics %s, %d partitions each)\n", brokers[0], topic, partitions)
	return seedAndWait(brokers, topic, partitions, seed, records, size)
}

// onBrokers creates the topics on a running cluster, for what run does on
// kfake.
func onBrokers(addr, topic string, partitions int32, seed string, records, size int) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, t := range strings.Split(topic, ",") {
		if err := kafkareal.CreateTopic(ctx, addr, t, partitions); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "kafka-dev: listening on %s (topics %s, %d partitions each, created on a running cluster)\n", addr, topic, partitions)
	return seedAndWait([]string{addr}, topic, partitions, seed, records, size)
}

// seedAndWait seeds the first topic, says it is ready and waits for a
// signal.
func seedAndWait(brokers []string, topic string, partitions int32, seed string, records, size int) error {
	start := time.Now()
	topic, _, _ = strings.Cut(topic, ",")
	n, err := seedTopic(brokers, topic, partitions, seed, records, size)
	if err != nil {
		return err
	}
	if n > 0 {
		fmt.Fprintf(os.Stderr, "kafka-dev: produced %d records to %s in %v\n", n, topic, time.Since(start).Round(time.Millisecond))
	}
	fmt.Fprintf(os.Stderr, "kafka-dev: ready; try: batchpipe --kafka-brokers %s --topic %s --until-end file -\n", brokers[0], topic)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	return nil
}

// seedTopic produces the lines of a file and generated records, spread
// round-robin over the partitions.
func seedTopic(brokers []string, topic string, partitions int32, seed string, records, size int) (int, error) {
	if seed == "" && records == 0 {
		return 0, nil
	}
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.ClientID = "kafka-dev"
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.MaxMessageBytes = 8 << 20
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return 0, fmt.Errorf("producer: %w", err)
	}
	defer p.Close()

	n := 0
	var batch []*sarama.ProducerMessage
	send := func(value []byte) error {
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Partition: int32(n) % partitions, Value: sarama.ByteEncoder(value)})
		n++
		if len(batch) < 10000 {
			return nil
		}
		return flush(p, &batch)
	}
	if seed != "" {
		f, err := os.Open(seed)
		if err != nil {
			return 0, fmt.Errorf("seed: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 8<<20) // lines longer than 64 KiB are records too
		for sc.Scan() {
			if err := send(bytes.Clone(sc.Bytes())); err != nil {
				return n, err
			}
		}
		if err := sc.Err(); err != nil {
			return n, fmt.Errorf("seed: %w", err)
		}
	}
	for i := range records {
		if err := send(generated(i, size)); err != nil {
			return n, err
		}
	}
	return n, flush(p, &batch)
}

func flush(p sarama.SyncProducer, batch *[]*sarama.ProducerMessage) error {
	if len(*batch) == 0 {
		return nil
	}
	if err := p.SendMessages(*batch); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	*batch = (*batch)[:0]
	return nil
}

// generated is record i: its number, padded with letters to size bytes.
func generated(i, size int) []byte {
	b := make([]byte, 0, size)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, byte('a'+len(b)%26))
	}
	return b[:max(size, 0)]
}
