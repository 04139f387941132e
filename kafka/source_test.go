package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokers is a cluster to produce to and connect to: a *kfake.Cluster or a
// *kafkatest.Cluster.
type brokers interface{ ListenAddrs() []string }

func connect(t *testing.T, c brokers) sarama.Client {
	t.Helper()
	conn := Conn{Brokers: c.ListenAddrs(), SessionTimeout: time.Second}
	client, err := conn.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// produce writes n records to each of the listed partitions of topic; the
// value of record i of partition p is "topic/p/i".
func produce(t *testing.T, c brokers, topic string, parts []int32, n int) {
	t.Helper()
	var msgs []*sarama.ProducerMessage
	for _, part := range parts {
		for i := range n {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: part,
				Value: sarama.StringEncoder(fmt.Sprintf("%s/%d/%d", topic, part, i))})
		}
	}
	kafkatest.Send(t, kafkatest.NewProducer(t, c.ListenAddrs()...), msgs)
}

// collect is a sink that counts the records it was given.
type collect struct {
	mu   sync.Mutex
	seen map[string]int
	fail func(b *batcher.Batch) error // nil: deliver everything
}

func (c *collect) Deliver(ctx context.Context, b *batcher.Batch) error {
	if c.fail != nil {
		if err := c.fail(b); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = make(map[string]int)
	}
	for i := range b.Len() {
		c.seen[string(b.Record(i))]++
	}
	return nil
}

// TestKafkaUntilEnd drains four partitions, alone and as a group; the
// group commits the end of each.
func TestKafkaUntilEnd(t *testing.T) {
	for _, group := range []string{"", "g"} {
		t.Run("group="+group, func(t *testing.T) {
			c, topic := kafkatest.NewTopic(t, 4)
			if group != "" {
				group = c.Name(group)
			}
			client := connect(t, c)
			produce(t, c, topic, []int32{0, 1, 2, 3}, 1000)

			k, err := OpenSource(client, SourceConfig{Topics: []string{topic}, Group: group, UntilEnd: true})
			if err != nil {
				t.Fatal(err)
			}
			sink := &collect{}
			p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: 100, Delim: '\n', Parallel: 4}}
			st, err := p.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Close(); err != nil {
				t.Fatal(err)
			}
			if err := k.CheckDrain(); err != nil {
				t.Fatal(err)
			}
			if st.Delivered != 4000 || len(sink.seen) != 4000 {
				t.Fatalf("delivered %d, %d distinct; want 4000", st.Delivered, len(sink.seen))
			}
			if lag := k.Lag(); lag[topic] != 0 {
				t.Fatalf("lag %v", lag)
			}
			if group == "" {
				return
			}
			for p, o := range committedOffsets(t, client, group, topic, 4) {
				if o != 1000 {
					t.Errorf("partition %d: committed %d, want 1000", p, o)
				}
			}
		})
	}
}

// committedOffsets returns the group's committed offsets of topic.
func committedOffsets(t *testing.T, client sarama.Client, group, topic string, parts int32) map[int32]int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	var ps []int32
	for p := range parts {
		ps = append(ps, p)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int32]int64)
	for _, p := range ps {
		out[p] = resp.GetBlock(topic, p).Offset
	}
	return out
}

// A batch that fails for good holds the committed offset of each of its
// partitions at or before its first record there, even with later batches
// delivered by other workers.
func TestKafkaFailedBatchHoldsCommits(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(4, "t"))
	client := connect(t, c)
	produce(t, c, "t", []int32{0, 1, 2, 3}, 2000)

	k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", UntilEnd: true, CommitInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const failing = 7
	var mu sync.Mutex
	first := make(map[int32]int64) // the failing batch's first offset per partition
	sink := &collect{fail: func(b *batcher.Batch) error {
		if b.Seq != failing {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		for i := b.Len() - 1; i >= 0; i-- {
			first[b.Meta(i).Partition] = b.Meta(i).Offset
		}
		return batcher.Permanent(errors.New("refused"))
	}}
	p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: 150, Delim: '\n', Parallel: 4}}
	if _, err := p.Run(context.Background()); err == nil {
		t.Fatal("the run succeeded despite a failed batch")
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	committed := committedOffsets(t, client, "g", "t", 4)
	if len(first) == 0 {
		t.Fatal("the failing batch was never attempted")
	}
	var total int64
	for part, off := range first {
		if committed[part] > off {
			t.Errorf("partition %d: committed %d, past %d, the failed batch's first record", part, committed[part], off)
		}
	}
	for _, c := range committed {
		total += max(c, 0)
	}
	if total < (failing-1)*150-4*150 {
		t.Errorf("committed %d records in all, though batches 1-%d were delivered", total, failing-1)
	}
	if lag := k.Lag(); lag["t"] == 0 {
		t.Errorf("no lag after a failed batch")
	}
}

// drain reads everything k gives until Run returns, without a pipeline.
func drain(t *testing.T, k *Source) []batcher.Record {
	t.Helper()
	out := make(chan []batcher.Record)
	errc := make(chan error, 1)
	go func() {
		errc <- k.Run(context.Background(), out)
		close(out)
	}()
	var recs []batcher.Record
	for chunk := range out {
		recs = append(recs, chunk...)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestKafkaFrom(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(2, "t"))
	client := connect(t, c)
	produce(t, c, "t", []int32{0, 1}, 100)
	future := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		from  string
		parts []int32
		want  int // records read
		first int64
	}{
		{"oldest", nil, 200, 0},
		{"newest", nil, 0, 0},
		{"60", nil, 80, 60},
		{"60", []int32{1}, 40, 60},
		{"1000", nil, 0, 0}, // past the end: starts at the end
		{future.Format(time.RFC3339), nil, 0, 0},
		{"2000-01-01T00:00:00Z", []int32{0}, 100, 0},
	} {
		t.Run(fmt.Sprintf("%s %v", tc.from, tc.parts), func(t *testing.T) {
			from, err := ParseFrom(tc.from, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Partitions: tc.parts, From: from, UntilEnd: true})
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			recs := drain(t, k)
			if len(recs) != tc.want {
				t.Fatalf("%d records, want %d", len(recs), tc.want)
			}
			for _, r := range recs {
				if r.Meta.Offset < tc.first || (tc.parts != nil && r.Meta.Partition != tc.parts[0]) {
					t.Fatalf("record %s[%d]@%d, want offsets from %d of partitions %v", r.Meta.Topic, r.Meta.Partition, r.Meta.Offset, tc.first, tc.parts)
				}
				if string(r.Data) != fmt.Sprintf("t/%d/%d", r.Meta.Partition, r.Meta.Offset) {
					t.Fatalf("record %s[%d]@%d holds %q", r.Meta.Topic, r.Meta.Partition, r.Meta.Offset, r.Data)
				}
			}
		})
	}
}

func TestKafkaLimit(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(4, "t"))
	client := connect(t, c)
	produce(t, c, "t", []int32{0, 1, 2, 3}, 1000)
	k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", Limit: 1234})
	if err != nil {
		t.Fatal(err)
	}
	sink := &collect{}
	p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: 100, Delim: '\n'}}
	st, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Delivered != 1234 {
		t.Fatalf("delivered %d, want 1234", st.Delivered)
	}
	var total int64
	for _, o := range committedOffsets(t, client, "g", "t", 4) {
		total += max(o, 0)
	}
	if total != 1234 {
		t.Fatalf("committed %d records in all, want the 1234 delivered", total)
	}
}

func TestKafkaOpenErrors(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(2, "t"))
	client := connect(t, c)
	for _, tc := range []struct {
		cfg  SourceConfig
		want string
	}{
		{SourceConfig{}, "no topic"},
		{SourceConfig{Topics: []string{"nope"}}, `topic "nope" does not exist`},
		{SourceConfig{Topics: []string{"t"}, Partitions: []int32{2}}, `topic "t" has no partition 2`},
		{SourceConfig{Topics: []string{"t"}, Group: "g", Partitions: []int32{0}}, "not both"},
	} {
		if k, err := OpenSource(client, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			if k != nil {
				k.Close()
			}
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseFrom(t *testing.T) {
	for in, want := range map[string]string{
		"oldest": "oldest", "beginning": "oldest", "newest": "newest", "end": "newest",
		"0": "0", "42": "42", "2024-05-01T10:00:00Z": "2024-05-01T10:00:00Z",
		"2024-05-01T10:00:00.5+02:00": "2024-05-01T10:00:00.5+02:00",
	} {
		f, err := ParseFrom(in, time.Now())
		if err != nil || f.String() != want {
			t.Errorf("ParseFrom(%q) = %v, %v; want %s", in, f, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "yesterday", "2024-05-01", "+24h", "24h"} {
		if _, err := ParseFrom(bad, time.Now()); err == nil {
			t.Errorf("ParseFrom(%q) accepted", bad)
		}
	}
	now := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"-24h": "2024-05-01T10:00:00Z", "-90m": "2024-05-02T08:30:00Z", "-1h30m15s": "2024-05-02T08:29:45Z",
	} {
		f, err := ParseFrom(in, now)
		if err != nil || f.Kind != FromTime || f.String() != want {
			t.Errorf("ParseFrom(%q) = %v, %v; want %s", in, f, err, want)
		}
		u, err := ParseTime(in, now)
		if err != nil || u.Format(time.RFC3339Nano) != want {
			t.Errorf("ParseTime(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}

// With a group, From applies only where nothing is committed.
func TestKafkaGroupFrom(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(1, "t"))
	client := connect(t, c)
	produce(t, c, "t", []int32{0}, 100)
	runGroup := func(from From) []batcher.Record {
		k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", From: from, UntilEnd: true})
		if err != nil {
			t.Fatal(err)
		}
		var got []batcher.Record
		var mu sync.Mutex
		sink := &collect{fail: func(b *batcher.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for i := range b.Len() {
				got = append(got, batcher.Record{Meta: b.Meta(i)})
			}
			return nil
		}}
		p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: 30, Delim: '\n'}}
		if _, err := p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := runGroup(From{Kind: FromOffset, Offset: 60})
	if len(got) != 40 || got[0].Meta.Offset != 60 {
		t.Fatalf("first run: %d records from offset %d, want 40 from 60", len(got), got[0].Meta.Offset)
	}
	produce(t, c, "t", []int32{0}, 10)
	got = runGroup(From{Kind: FromOldest})
	if len(got) != 10 || got[0].Meta.Offset != 100 {
		t.Fatalf("second run: %d records from offset %d, want 10 from the committed 100", len(got), got[0].Meta.Offset)
	}
}

// Stopped while a chunk waits for the pipeline, Run counts as read only
// the records it handed over; the ones it did not stay pending, so that no
// commit passes them.
func TestKafkaReadCountsHandedOver(t *testing.T) {
	k := &Source{cfg: SourceConfig{Group: "g"}, track: newTracker(), chunks: make(chan readChunk),
		change: make(chan struct{}, 1), fatal: make(chan error, 1)}
	k.once.Do(func() {}) // no readers: the test plays them
	st := k.track.assign("t", 0, 0, -1, 0)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []batcher.Record)
	errc := make(chan error, 1)
	go func() { errc <- k.Run(ctx, out) }()

	first, second := records("t", 0, span(0, 10)...), records("t", 0, span(10, 20)...)
	k.chunks <- readChunk{st: st, recs: first}
	handed := <-out
	k.chunks <- readChunk{st: st, recs: second} // taken, never handed: nobody reads out
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if n := k.Read(); n != int64(len(handed)) {
		t.Fatalf("Read says %d records, but %d were handed over", n, len(handed))
	}
	k.track.ack(batch(handed, 0, len(handed)))
	if cs := k.track.commits(); len(cs) != 1 || cs[0].offset != 10 {
		t.Fatalf("commits %+v, want one at 10, the first record not handed over", cs)
	}
}

// produceTxn writes n records to partition part of topic in one committed
// transaction: the partition then ends with a commit marker, an offset that
// holds no record to read.
func produceTxn(t *testing.T, c brokers, topic string, part int32, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("txn-"+t.Name()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: part, Value: fmt.Appendf(nil, "%s/%d/%d", topic, part, i)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitStable(t, c.ListenAddrs()[0], topic)
}

// drainWithin is drain that fails the test if Run does not return within a
// generous bound: the bugs it guards against hang forever.
func drainWithin(t *testing.T, k *Source) []batcher.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make(chan []batcher.Record)
	errc := make(chan error, 1)
	go func() {
		errc <- k.Run(ctx, out)
		close(out)
	}()
	var recs []batcher.Record
	for chunk := range out {
		recs = append(recs, chunk...)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v, after %d records", err, len(recs))
	}
	return recs
}

// With UntilEnd, a partition whose end offset no record reaches is still
// finished: the last offset below the end holds a transaction marker, and
// either a record past the end is read or the partition stays idle.
func TestKafkaUntilEndPastMarker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		from  From
		after int // records produced once the end offset is captured
		want  int
	}{
		{"marker at the end", From{}, 0, 10},
		{"records past the end", From{}, 5, 10},
		{"start at the marker", From{Kind: FromOffset, Offset: 10}, 0, 0},
		{"start at the marker, records past the end", From{Kind: FromOffset, Offset: 10}, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, topic := kafkatest.NewTopic(t, 1)
			client := connect(t, c)
			produceTxn(t, c, topic, 0, 10) // offsets 0-9, the marker at 10
			k, err := OpenSource(client, SourceConfig{Topics: []string{topic}, From: tc.from, UntilEnd: true})
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			if tc.after > 0 {
				produce(t, c, topic, []int32{0}, tc.after)
			}
			recs := drainWithin(t, k)
			if len(recs) != tc.want {
				t.Fatalf("%d records, want %d", len(recs), tc.want)
			}
			for i, r := range recs {
				if r.Meta.Offset != int64(10-tc.want+i) {
					t.Fatalf("record %d at offset %d", i, r.Meta.Offset)
				}
			}
		})
	}
}

// The same as a group, which commits the end offset, past the marker.
func TestKafkaGroupUntilEndPastMarker(t *testing.T) {
	c, topic := kafkatest.NewTopic(t, 1)
	client := connect(t, c)
	produceTxn(t, c, topic, 0, 10)
	for _, tc := range []struct {
		group string
		from  From
		want  int64
	}{
		{"g1", From{}, 10},
		{"g2", From{Kind: FromOffset, Offset: 10}, 0}, // as if an earlier run committed the last record
	} {
		t.Run(tc.group, func(t *testing.T) {
			st, err := runPipeline(t, client, SourceConfig{Topics: []string{topic}, Group: c.Name(tc.group), From: tc.from, UntilEnd: true})
			if err != nil {
				t.Fatalf("after %d records: %v", st.Delivered, err)
			}
			if st.Delivered != tc.want {
				t.Fatalf("delivered %d, want %d", st.Delivered, tc.want)
			}
			if o := committedOffsets(t, client, c.Name(tc.group), topic, 1)[0]; o != 11 {
				t.Fatalf("committed %d, want 11, past the marker", o)
			}
		})
	}
}

// runPipeline runs a pipeline of batches of 3 from a Kafka source to
// memory, for at most 20 s, and closes the source; the error is the first
// of the run's and Close's.
func runPipeline(t *testing.T, client sarama.Client, cfg SourceConfig) (batcher.Stats, error) {
	t.Helper()
	k, err := OpenSource(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := &batcher.Pipeline{Source: k, Sink: &collect{}, Config: batcher.Config{MaxRecords: 3, Delim: '\n'}}
	st, err := p.Run(ctx)
	if cerr := k.Close(); err == nil {
		err = cerr
	}
	return st, err
}

// Records deleted after a group committed below them: the run fails,
// as it does without a group, rather than skip them unsaid as sarama's
// group consumer would; the committed offset stays where it was.
func TestKafkaGroupDeletedRecordsFail(t *testing.T) {
	c, topic := kafkatest.NewTopic(t, 1)
	client := connect(t, c)
	produce(t, c, topic, []int32{0}, 10)
	groupRun := func(cfg SourceConfig) (batcher.Stats, error) {
		cfg.Topics, cfg.Group = []string{topic}, c.Name("g")
		return runPipeline(t, client, cfg)
	}
	if _, err := groupRun(SourceConfig{Limit: 3}); err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteRecords(topic, map[int32]int64{0: 10}); err != nil {
		t.Fatal(err)
	}
	st, err := groupRun(SourceConfig{UntilEnd: true})
	if !errors.Is(err, sarama.ErrOffsetOutOfRange) || !strings.Contains(err.Error(), topic+"[0]") ||
		!strings.Contains(err.Error(), "committed offset 3 is outside the offsets kept (10-10)") {
		t.Fatalf("err %v", err)
	}
	if st.Delivered != 0 {
		t.Fatalf("delivered %d, want none", st.Delivered)
	}
	if o := committedOffsets(t, client, c.Name("g"), topic, 1)[0]; o != 3 {
		t.Fatalf("committed %d, want 3", o)
	}
}

// While the pipeline takes nothing, lag still counts the records produced
// meanwhile: sarama's consumer fetches nothing for a partition whose
// records wait, so the high watermark is asked of the broker.
func TestKafkaLagWhileStalled(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(1, "t"))
	client := connect(t, c)
	produce(t, c, "t", []int32{0}, 100)
	k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- k.Run(ctx, make(chan []batcher.Record)) }() // nobody takes the records
	defer func() { cancel(); <-errc }()
	produce(t, c, "t", []int32{0}, 5000)
	k.refreshHighWatermarks(k.client)
	if lag := k.Lag(); lag["t"] != 5100 {
		t.Fatalf("lag %v, want t:5100, every record produced", lag)
	}
	if pl := k.PartitionLag(); len(pl) != 1 || pl[0].Lag != 5100 {
		t.Fatalf("partition lag %+v, want 5100", pl)
	}
}

// Shutdown stops waiting for a broker that does not answer once its context
// ends. Without an answer to the final commit it says the offsets may not be
// committed; with the commit answered and only leaving the group unanswered,
// nothing is lost and it returns nil.
func TestKafkaShutdownUnansweredRequest(t *testing.T) {
	for _, tc := range []struct {
		key  kmsg.Key
		want string // the error; "": none, and the commit was made
	}{
		{kmsg.OffsetCommit, `kafka: group "g": final commit abandoned: no answer; the offsets of delivered records may not be committed`},
		{kmsg.LeaveGroup, ""},
	} {
		t.Run(tc.key.Name(), func(t *testing.T) {
			c := kafkatest.NewFake(t, kfake.SeedTopics(1, "t"))
			client := connect(t, c)
			produce(t, c, "t", []int32{0}, 100)
			k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", UntilEnd: true, CommitInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			p := &batcher.Pipeline{Source: k, Sink: &collect{}, Config: batcher.Config{MaxRecords: 30, Delim: '\n'}}
			if _, err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Taken, never answered, and Shutdown told to stop waiting. A
			// broker answers a connection in order, so nothing after it on
			// that connection is answered either.
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			c.ControlKey(tc.key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				cancel(errors.New("no answer"))
				return nil, nil, true
			})
			err = k.Shutdown(ctx)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.want == "" {
				// On a connection of its own.
				if o := committedOffsets(t, connect(t, c), "g", "t", 1)[0]; o != 100 {
					t.Fatalf("committed %d, want 100", o)
				}
			}
			// The broker gone, the requests fail and closing ends.
			c.Close()
			k.Close()
		})
	}
}

// A join the group refuses for good fails Run at once, Refused when
// nothing was assigned yet; other join errors fail it once no
// partitions have been assigned for Timeout.
func TestKafkaGroupJoinErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []kfake.Opt
		faults  func(c *kfake.Cluster)
		start   bool // Refused
		want    string
		wantErr error
	}{
		{
			name:    "session timeout below the broker's minimum",
			opts:    []kfake.Opt{kfake.GroupMinSessionTimeout(6 * time.Second)}, // Kafka's default
			start:   true,
			want:    "set --kafka-session-timeout (now 1s) between the broker's group.min.session.timeout.ms",
			wantErr: sarama.ErrInvalidSessionTimeout,
		},
		{
			name: "group not authorized",
			faults: func(c *kfake.Cluster) {
				c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup}, Err: kerr.GroupAuthorizationFailed, Count: -1})
			},
			start:   true,
			want:    "the user needs Read on the group",
			wantErr: sarama.ErrGroupAuthorizationFailed,
		},
		{
			name: "not authorized after a rebalance",
			faults: func(c *kfake.Cluster) {
				// Once a member has synced, its next heartbeat asks it to
				// rejoin, and the join is refused.
				var synced atomic.Bool
				c.ControlKey(kmsg.SyncGroup.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
					synced.Store(true)
					return nil, nil, false
				})
				after := func(kmsg.Request) bool { return synced.Load() }
				c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.RebalanceInProgress, When: after},
					kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup}, Err: kerr.GroupAuthorizationFailed, Count: -1, When: after})
			},
			want:    "the user needs Read on the group",
			wantErr: sarama.ErrGroupAuthorizationFailed,
		},
		{
			name: "coordinator not available",
			faults: func(c *kfake.Cluster) {
				c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup}, Err: kerr.CoordinatorNotAvailable, Count: -1})
			},
			want:    `kafka: group "g": no partitions assigned for`,
			wantErr: sarama.ErrConsumerCoordinatorNotAvailable,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkatest.NewFake(t, append(tc.opts, kfake.SeedTopics(1, "t"))...)
			client := connect(t, c) // session timeout 1s
			produce(t, c, "t", []int32{0}, 10)
			if tc.faults != nil {
				tc.faults(c)
			}
			k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			// Long enough for any of these to fail, short of hanging.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = k.Run(ctx, make(chan []batcher.Record, 1))
			var kerr *Error
			refused := errors.As(err, &kerr) && kerr.Kind == Refused
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.wantErr) || refused != tc.start {
				t.Fatalf("Run: %v; want %q wrapping %v, refused: %v", err, tc.want, tc.wantErr, tc.start)
			}
		})
	}
}

// A group that cannot be left after a clean final commit loses nothing:
// Close reports no error, so the run's exit says all was delivered.
func TestKafkaLeaveGroupFailureIsNoError(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(1, "t"))
	client := connect(t, c)
	produce(t, c, "t", []int32{0}, 10)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.LeaveGroup}, Err: kerr.CoordinatorNotAvailable, Count: -1})
	st, err := runPipeline(t, client, SourceConfig{Topics: []string{"t"}, Group: "g", UntilEnd: true})
	if err != nil || st.Delivered != 10 {
		t.Fatalf("delivered %d: %v", st.Delivered, err)
	}
	if o := committedOffsets(t, client, "g", "t", 1)[0]; o != 10 {
		t.Fatalf("committed %d, want 10", o)
	}
}
