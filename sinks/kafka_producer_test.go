package sinks

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/kafkaconn"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newKafkaProducer starts a cluster with topic "t" of parts partitions and
// opens the sink on it.
func newKafkaProducer(t testing.TB, parts int32, cfg KafkaProducerConfig) (*KafkaProducer, *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	part, _ := NewKafkaPartitioner(PartitionMurmur2)
	client, err := (&kafkaconn.Conn{Brokers: c.ListenAddrs()}).ConnectProducer(kafkaconn.ProducerOptions{Partitioner: part}, "t")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Topic = "t"
	k, err := NewKafkaProducer(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, c
}

// BenchmarkKafkaProducer produces batches of 1000 records of 100 bytes.
func BenchmarkKafkaProducer(b *testing.B) {
	k, _ := newKafkaProducer(b, 4, KafkaProducerConfig{})
	recs := make([][]byte, 1000)
	for i := range recs {
		recs[i] = bytes.Repeat([]byte{'x'}, 99)
	}
	batch := batchOf(b, '\n', recs...)
	b.SetBytes(int64(batch.Size()))
	b.ResetTimer()
	for b.Loop() {
		if err := k.Deliver(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
}

// A second signal must not wait for the broker: Deliver returns when ctx
// ends, with the records in flight copied away from the batch.
func TestKafkaProducerAbandon(t *testing.T) {
	k, c := newKafkaProducer(t, 1, KafkaProducerConfig{})
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		<-release
		return nil, nil, false
	})
	defer close(release)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Deliver(ctx, batchOf(t, '\n', []byte("a"), []byte("b"))) }()
	<-held // the broker has the request and does not answer
	cancel(errors.New("second signal"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "second signal") {
		t.Fatalf("Deliver: %v, want the cause of the cancellation", err)
	}
}

// Records that cannot be produced are rejected alone, with the reason;
// the rest of the batch is delivered.
func TestKafkaProducerRejects(t *testing.T) {
	k, _ := newKafkaProducer(t, 2, KafkaProducerConfig{Unwrap: true, KeepPartition: true})
	b := batchOf(t, '\n', []byte(`{"value":"ok","partition":1}`), []byte(`{"value":"far","partition":7}`), []byte("not json"))
	err := k.Deliver(context.Background(), b)
	var rej *batcher.RejectError
	if !errors.As(err, &rej) || len(rej.Records) != 2 {
		t.Fatalf("Deliver: %v, want 2 records rejected", err)
	}
	for i, want := range map[int]string{0: "topic t has 2 partitions", 1: "not an envelope"} {
		r := rej.Records[i]
		if r.Index != i+1 || r.Again || !strings.Contains(r.Err.Error(), want) {
			t.Errorf("rejected %+v, want record %d for good: %q", r, i+1, want)
		}
	}
}
