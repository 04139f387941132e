package kafkatest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

// version is the protocol version of the tests' own clients: that of
// batchpipe's (kafka.Version), which kfake and Kafka 3 and 4 all speak.
var version = sarama.V2_4_0_0

// Config returns a client configuration for the tests' own clients.
func Config() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = version
	return cfg
}

// Client returns a client of the cluster at addrs, closed when the test
// ends.
func Client(t testing.TB, addrs ...string) sarama.Client {
	t.Helper()
	client, err := sarama.NewClient(addrs, Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// NewProducer returns a producer to the cluster at addrs that writes each
// message to the partition it names, closed when the test ends. It is
// idempotent: on a loaded machine a produce request can time out and be
// sent again, and a plain producer would then write a test's input twice.
func NewProducer(t testing.TB, addrs ...string) sarama.SyncProducer {
	t.Helper()
	cfg := Config()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Return.Successes = true
	cfg.Producer.MaxMessageBytes = 8 << 20
	p, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Send produces msgs in requests of a few thousand, so that a large test
// topic is not one request over the broker's limit.
func Send(t testing.TB, p sarama.SyncProducer, msgs []*sarama.ProducerMessage) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		if err := p.SendMessages(msgs[:n]); err != nil {
			t.Fatal(sendError(err))
		}
		msgs = msgs[n:]
	}
}

// GroupOffset returns group's committed offset of a partition of topic,
// or -1 when it has none.
func GroupOffset(t testing.TB, addr, group, topic string, part int32) int64 {
	t.Helper()
	client, err := sarama.NewClient([]string{addr}, Config())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	coord, err := client.Coordinator(group)
	if err != nil {
		t.Fatal(err)
	}
	req := &sarama.OffsetFetchRequest{Version: 5, ConsumerGroup: group}
	req.AddPartition(topic, part)
	resp, err := coord.FetchOffset(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Err == sarama.ErrGroupIDNotFound {
		return -1 // kfake: a group never committed to
	}
	b := resp.GetBlock(topic, part)
	if b == nil {
		t.Fatalf("offset fetch of %s %s/%d: %v, no block", group, topic, part, resp.Err)
	}
	return b.Offset
}

// sendError says why messages were not delivered, per partition and
// error: sarama's own error only counts them.
func sendError(err error) error {
	var perrs sarama.ProducerErrors
	if !errors.As(err, &perrs) {
		return err
	}
	why := make(map[string]int)
	for _, pe := range perrs {
		why[fmt.Sprintf("%s[%d]: %v", pe.Msg.Topic, pe.Msg.Partition, pe.Err)]++
	}
	lines := make([]string, 0, len(why))
	for w, n := range why {
		lines = append(lines, fmt.Sprintf("%s (%d messages)", w, n))
	}
	slices.Sort(lines)
	return fmt.Errorf("%w:\n%s", err, strings.Join(lines, "\n"))
}
