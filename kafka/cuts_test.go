package kafka

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestCutsEncoding(t *testing.T) {
	for _, tc := range []struct {
		offset int64
		ends   []int64
		meta   string
	}{
		{100, nil, "bp1:"},
		{100, []int64{100}, "bp1:1"},
		{100, []int64{90, 199, 299, 305}, "bp1:100,100,6"},
	} {
		meta := encodeCuts(tc.offset, tc.ends)
		if meta != tc.meta {
			t.Errorf("encodeCuts(%d, %v) = %q, want %q", tc.offset, tc.ends, meta, tc.meta)
		}
		ends, err := decodeCuts(tc.offset, meta)
		want := slices.DeleteFunc(slices.Clone(tc.ends), func(e int64) bool { return e < tc.offset })
		if err != nil || !slices.Equal(ends, want) {
			t.Errorf("decodeCuts(%d, %q) = %v, %v; want %v", tc.offset, meta, ends, err, want)
		}
	}
	for _, meta := range []string{"", "some other tool's", "bp1"} {
		if ends, err := decodeCuts(5, meta); err != nil || ends != nil {
			t.Errorf("decodeCuts(%q) = %v, %v: want no plan", meta, ends, err)
		}
	}
	for _, meta := range []string{"bp1:x", "bp1:0", "bp1:3,-1"} {
		if _, err := decodeCuts(5, meta); err == nil {
			t.Errorf("decodeCuts(%q): want an error", meta)
		}
	}
}

// spanSink keeps every batch's span and bytes; after stopAfter batches it
// holds the rest until the run is abandoned.
type spanSink struct {
	mu        sync.Mutex
	got       []spanBytes
	stopAfter int
	stuck     chan struct{}
	once      sync.Once
}

type spanBytes struct {
	span  batcher.Span
	bytes string
}

func (s *spanSink) Deliver(ctx context.Context, b *batcher.Batch) error {
	span, ok := b.Span()
	if !ok {
		return batcher.Permanent(fmt.Errorf("batch %d is not of one partition", b.Seq))
	}
	s.mu.Lock()
	if s.stopAfter > 0 && len(s.got) >= s.stopAfter {
		s.mu.Unlock()
		s.once.Do(func() { close(s.stuck) })
		<-ctx.Done()
		return ctx.Err()
	}
	defer s.mu.Unlock()
	s.got = append(s.got, spanBytes{span, string(b.Bytes())})
	return nil
}

// checkSpans checks that the batches delivered, across runs, cut each
// partition the same way every time: a span seen twice has the same bytes,
// and the spans seen tile offsets 0 to n-1 of every partition.
func checkSpans(t *testing.T, got []spanBytes, parts int32, n int64) {
	t.Helper()
	seen := map[batcher.Span]string{}
	for _, g := range got {
		if b, ok := seen[g.span]; ok && b != g.bytes {
			t.Fatalf("batch %s delivered twice with other bytes", g.span.ID())
		}
		seen[g.span] = g.bytes
	}
	for p := range parts {
		var spans []batcher.Span
		for s := range seen {
			if s.Partition == p {
				spans = append(spans, s)
			}
		}
		slices.SortFunc(spans, func(a, b batcher.Span) int { return int(a.First - b.First) })
		next := int64(0)
		for _, s := range spans {
			if s.First != next {
				t.Fatalf("partition %d: batch %s, want one starting at %d (all: %v)", p, s.ID(), next, spans)
			}
			next = s.Last + 1
		}
		if next != n {
			t.Fatalf("partition %d: batches end at %d, want %d", p, next, n)
		}
	}
}

// A run stopped with batches cut and not delivered: the next run, with
// other -n and -j, forms those batches again, then cuts its own.
func TestKafkaExactlyOnceReformsBatches(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(3, "t"))
	client := connect(t, c)
	produce(t, c, "t", []int32{0, 1, 2}, 400)

	var all []spanBytes
	run := func(maxRecords, parallel, stopAfter int) (batcher.Stats, *Source) {
		k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", UntilEnd: true, ExactlyOnce: true})
		if err != nil {
			t.Fatal(err)
		}
		sink := &spanSink{stopAfter: stopAfter, stuck: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-sink.stuck:
				cancel() // a crash: what was cut and not delivered stays so
			case <-ctx.Done():
			}
		}()
		p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: maxRecords, Delim: '\n',
			Parallel: parallel, Key: batcher.PartitionKey, Plan: k.plan}}
		st, err := p.Run(ctx)
		if stopAfter == 0 && err != nil {
			t.Fatal(err)
		}
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
		all = append(all, sink.got...)
		return st, k
	}
	st1, k1 := run(37, 2, 10)
	if st1.Delivered >= 1200 || k1.CutsStored() <= 10 {
		t.Fatalf("first run: want some batches cut and not delivered, got %+v, %d cuts stored", st1, k1.CutsStored())
	}
	st2, _ := run(91, 3, 0)
	if st2.Reformed == 0 {
		t.Fatalf("second run re-formed no batch: %+v", st2)
	}
	checkSpans(t, all, 3, 400)
	off := committedOffsets(t, client, "g", "t", 3)
	for p, o := range off {
		if o != 400 {
			t.Errorf("partition %d committed at %d, want 400", p, o)
		}
	}
	// The end commits list no cut left.
	admin, _ := sarama.NewClusterAdminFromClient(client)
	resp, err := admin.ListConsumerGroupOffsets("g", map[string][]int32{"t": {0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if m := resp.GetBlock("t", p).Metadata; m != "bp1:" {
			t.Errorf("partition %d: metadata %q at the end, want bp1: alone", p, m)
		}
	}
}

// With cooperative rebalancing, a cut stored just as a rebalance moves the
// generation is refused until the member learns the new one, a moment
// later: it is tried again at once, not after the commit interval, which
// would hold up every partition, as the aggregator waits for the cut.
func TestKafkaCooperativeCutRetriedSoon(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(1, "t"))
	produce(t, c, "t", []int32{0}, 100)
	conn := Conn{Brokers: c.ListenAddrs(), SessionTimeout: time.Second, Strategy: "cooperative-sticky"}
	client, err := conn.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", ExactlyOnce: true, CommitInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.IllegalGeneration, Count: 3})
	sink := &spanSink{stopAfter: 5, stuck: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-sink.stuck:
			cancel()
		case <-ctx.Done():
		}
	}()
	p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: 10, Delim: '\n',
		Key: batcher.PartitionKey, Plan: k.plan}}
	p.Run(ctx)
	k.Close()
	select {
	case <-sink.stuck:
	default:
		t.Fatalf("%d batches delivered in 30s, want 5: cuts refused 3 times wait for the commit interval (1m)", len(sink.got))
	}
}
