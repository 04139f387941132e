package kafka

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A cooperative member stopped while the group moves to a new generation
// that sarama has not taken up yet: its final commit is refused under the
// old one. It is made again under the new one, and the member stops with
// everything it delivered committed, not with an error and its records to
// be read again.
func TestKafkaCooperativeFinalCommitWaitsForGeneration(t *testing.T) {
	kafkatest.FakeOnly(t, "a commit refused on cue")
	c := kafkatest.NewFake(t, kfake.SeedTopics(2, "t"))
	produce(t, c, "t", []int32{0, 1}, 100)
	conn := Conn{Brokers: c.ListenAddrs(), SessionTimeout: time.Second, Strategy: "cooperative-sticky"}
	client, err := conn.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", CommitInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sink := &countSink{want: 200, done: cancel}
	p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: 50, Delim: '\n'}}
	p.Run(ctx)
	if n := sink.n.Load(); n != 200 {
		t.Fatalf("delivered %d records, want 200", n)
	}

	// The final commit is refused as the broker refuses one under a
	// generation the group has left; then a second member joins, which
	// moves the group to the next.
	refused := make(chan struct{})
	c.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		close(refused)
		return kafkatest.RefuseCommit(r, kerr.IllegalGeneration.Code), nil, true
	})
	closed := make(chan error, 1)
	go func() { closed <- k.Close() }()
	select {
	case <-refused:
	case err := <-closed:
		t.Fatalf("closed before its final commit was refused: %v", err)
	}
	other, err := conn.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	group, err := sarama.NewConsumerGroupFromClient("g", other)
	if err != nil {
		t.Fatal(err)
	}
	otherCtx, stopOther := context.WithCancel(context.Background())
	joined := make(chan error, 1)
	go func() { joined <- group.Consume(otherCtx, []string{"t"}, idleHandler{}) }()
	defer func() {
		stopOther()
		<-joined
		group.Close()
	}()

	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("close still waiting after 15s")
	}
	for part, off := range committedOffsets(t, client, "g", "t", 2) {
		if off != 100 {
			t.Errorf("partition %d: committed %d, want 100", part, off)
		}
	}
}

// countSink counts the records delivered and calls done once it has want.
type countSink struct {
	n    atomic.Int64
	want int64
	done func()
}

func (s *countSink) Deliver(ctx context.Context, b *batcher.Batch) error {
	if s.n.Add(int64(b.Len())) >= s.want {
		s.done()
	}
	return nil
}

// idleHandler holds the partitions it is given, dropping their records.
type idleHandler struct{}

func (idleHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (idleHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (idleHandler) ConsumeClaim(_ sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for range claim.Messages() {
	}
	return nil
}
