package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/batchtest"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A txnEnv is a cluster with a source topic of one partition, a topic of
// two to write to and a group: on kfake, or on the real broker.
type txnEnv struct {
	addr, src, dst, group string
}

func newTxnEnv(t *testing.T) txnEnv {
	t.Helper()
	c, dst := kafkatest.NewTopic(t, 2)
	e := txnEnv{addr: c.Addrs[0], src: c.Name("src"), dst: dst, group: c.Name("g")}
	kafkatest.CreateTopic(t, e.addr, e.src, 1)
	return e
}

// srcBatch makes a batch of the records of partition 0 of the source
// topic from first to last, as the pipeline does with --exactly-once.
func (e txnEnv) srcBatch(t *testing.T, first, last int64) *batcher.Batch {
	t.Helper()
	var recs batchtest.Source
	for off := first; off <= last; off++ {
		recs = append(recs, batcher.Record{Data: []byte("r" + strconv.FormatInt(off, 10)),
			Meta: &batcher.Meta{Topic: e.src, Partition: 0, Offset: off}})
	}
	return batchtest.OfRecords(t, '\n', recs)
}

// producer opens a transactional sink to the topic written to, committing
// the group's offsets; maxBytes, if given, is the largest record.
func (e txnEnv) producer(t *testing.T, maxBytes ...int) *Producer {
	t.Helper()
	opts := ProducerOptions{Transactional: true}
	if len(maxBytes) > 0 {
		opts.MaxMessageBytes = maxBytes[0]
	}
	client, err := (&Conn{Brokers: []string{e.addr}}).ConnectProducer(opts, e.dst)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewProducer(client, ProducerConfig{Topic: e.dst, TxnGroup: e.group})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// groupOffset is the group's committed offset of the source partition,
// -1 for none.
func (e txnEnv) groupOffset(t *testing.T) int64 {
	t.Helper()
	return kafkatest.GroupOffset(t, e.addr, e.group, e.src, 0)
}

// waitOffset waits for the group's committed offset of the source
// partition to be want: a real broker applies a transaction's offsets once
// it has written its markers, after EndTxn has returned.
func (e txnEnv) waitOffset(t *testing.T, want int64) {
	t.Helper()
	kafkatest.Eventually(t, fmt.Sprintf("group offset %d", want), func() bool {
		return e.groupOffset(t) == want
	})
}

// A run after a crash reads records a transaction of the run before wrote:
// it skips them, as the group's offset says. The run before, fenced, does
// not deliver the batch it held, and a read_committed reader sees every
// record once.
func TestKafkaTxnSkipsWhatWasCommittedAndFences(t *testing.T) {
	e := newTxnEnv(t)
	ctx := context.Background()

	old := e.producer(t)
	if err := old.Deliver(ctx, e.srcBatch(t, 0, 9)); err != nil {
		t.Fatal(err)
	}
	e.waitOffset(t, 10) // after the first transaction

	next := e.producer(t) // fences old
	if err := next.Deliver(ctx, e.srcBatch(t, 5, 14)); err != nil {
		t.Fatal(err)
	}
	e.waitOffset(t, 15)

	// old lost the partition: fenced, it must not fence next back.
	old.txn.owns = func(*batcher.Batch) bool { return false }
	if err := old.Deliver(ctx, e.srcBatch(t, 10, 19)); err == nil {
		t.Fatal("a fenced producer's batch was counted delivered")
	}
	if err := next.Deliver(ctx, e.srcBatch(t, 15, 19)); err != nil {
		t.Fatalf("the new owner was fenced back: %v", err)
	}
	e.waitOffset(t, 20)

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addr), kgo.ConsumeTopics(e.dst),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) < 20 {
		fs := cl.PollFetches(pctx)
		if err := pctx.Err(); err != nil {
			t.Fatalf("read_committed: %d records of 20: %v", len(got), got)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	slices.Sort(got)
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("r%d", i))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("read_committed sees %v, want %v", got, want)
	}
}

// A record refused fails its whole batch: the offset committed would pass
// it. Not a RejectError, which would count the others delivered.
func TestKafkaTxnRefusedRecordFailsTheBatch(t *testing.T) {
	e := newTxnEnv(t)
	k := e.producer(t, 2) // "r10" is over 2 bytes
	err := k.Deliver(context.Background(), e.srcBatch(t, 8, 11))
	var rej *batcher.RejectError
	if err == nil || !batcher.IsPermanent(err) || errors.As(err, &rej) {
		t.Fatalf("Deliver: %v; want a permanent error for the whole batch", err)
	}
	if got := e.groupOffset(t); got != -1 {
		t.Fatalf("group offset %d, want none", got)
	}
}

// Batches of a partition commit in the order formed; one not delivered
// stops the later ones of its partition, not those of others.
func TestTurns(t *testing.T) {
	tr := newTurns()
	tr.plan("a", "p")
	tr.plan("b", "p")
	tr.plan("x", "q")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.wait(ctx, "b", "p") }()
	if err := tr.wait(ctx, "x", "q"); err != nil {
		t.Fatalf("the first batch of another partition waits: %v", err)
	}
	if err := tr.wait(ctx, "a", "p"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("b went before a settled: %v", err)
	default:
	}
	tr.settled("a", nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	tr.plan("c", "p")
	tr.plan("d", "p")
	tr.settled("b", nil)
	tr.settled("c", errors.New("failed"))
	if err := tr.wait(ctx, "d", "p"); err == nil {
		t.Fatal("a batch after one not delivered may commit")
	}
	tr.plan("e", "r")
	tr.plan("f", "r")
	go func() { done <- tr.wait(ctx, "f", "r") }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("wait after cancel: %v", err)
	}
}
