package kafka

// The Kafka sink through a broker outage: a kfake cluster closed, and a
// new one started on the same port.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/batchtest"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// outageProducer opens the sink on a cluster listening on port, which
// the test may close and start again with startOn.
func outageProducer(t *testing.T, cfg ProducerConfig) (*Producer, *kfake.Cluster, int) {
	t.Helper()
	kafkatest.FakeOnly(t, "a cluster stopped and started again on its port")
	port := kafkatest.FreePort(t)
	c := startOn(t, port)
	client, err := (&Conn{Brokers: c.ListenAddrs()}).ConnectProducer(ProducerOptions{}, "t")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Topic, cfg.Brokers = "t", c.ListenAddrs()
	k, err := NewProducer(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, c, port
}

func startOn(t *testing.T, port int) *kfake.Cluster {
	t.Helper()
	return kafkatest.NewFake(t, kfake.Ports(port), kfake.SeedTopics(1, "t"))
}

// A producer id asked for while the cluster is away makes sarama drop
// every broker the client knew, its seeds too ("run out of available
// brokers"): once a cluster listens again on the same address, the client
// is seeded again and the next batch lands.
func TestKafkaProducerAfterOutage(t *testing.T) {
	k, c, port := outageProducer(t, ProducerConfig{})
	if err := k.Deliver(context.Background(), batchtest.Of(t, '\n', batchtest.Lines("before")...)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	k.resetProducerID(k.id.gen) // as after a failure: the next attempt asks for a new one
	if _, err := k.producerID(); !errors.Is(err, sarama.ErrOutOfBrokers) {
		t.Fatalf("producer id with the cluster away: %v, want no broker left", err)
	}
	c = startOn(t, port)
	if err := k.Deliver(context.Background(), batchtest.Of(t, '\n', batchtest.Lines("after")...)); err != nil {
		t.Fatalf("Deliver once the cluster is back: %v", err)
	}
	if got := readAll(t, c, "t", 1)[0]; len(got) != 1 || got[0] != "after" {
		t.Fatalf("the new cluster holds %q, want the record sent after the outage", got)
	}
}

// While no broker answers, a record batch is tried past its attempts,
// until none has answered for the timeout; then it is rejected to be tried
// again, saying why.
func TestKafkaProducerOutageTimeout(t *testing.T) {
	k, c, _ := outageProducer(t, ProducerConfig{Timeout: 300 * time.Millisecond})
	if err := k.Deliver(context.Background(), batchtest.Of(t, '\n', batchtest.Lines("before")...)); err != nil {
		t.Fatal(err)
	}
	k.attempts = 1 // were the attempts counted, the first failure would end them
	c.Close()
	err := k.Deliver(context.Background(), batchtest.Of(t, '\n', batchtest.Lines("a", "b")...))
	var rej *batcher.RejectError
	if !errors.As(err, &rej) || len(rej.Records) != 2 {
		t.Fatalf("Deliver with the cluster away: %v, want both records rejected", err)
	}
	for _, r := range rej.Records {
		if !r.Again || !strings.Contains(r.Err.Error(), "no broker answered for") || !strings.Contains(r.Err.Error(), "--kafka-timeout") {
			t.Fatalf("rejected %+v, want to be tried again after no answer for --kafka-timeout", r)
		}
	}
}
