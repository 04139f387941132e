package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/batchtest"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newTestProducer opens the sink on a topic of parts partitions of its
// own: on kfake, or on the real broker (kafkatest).
func newTestProducer(t testing.TB, parts int32, cfg ProducerConfig, opts ...ProducerOptions) (*Producer, *kafkatest.Cluster) {
	t.Helper()
	c, topic := kafkatest.NewTopic(t, parts)
	return openTestProducer(t, c.Addrs, topic, cfg, opts...), c
}

// newFakeProducer opens the sink on a kfake cluster with topic "t" of
// parts partitions, whose listener listen makes, if not nil: for a test
// that needs kfake's controls, said by why.
func newFakeProducer(t testing.TB, why string, parts int32, cfg ProducerConfig, listen func(network, addr string) (net.Listener, error), opts ...ProducerOptions) (*Producer, *kfake.Cluster) {
	t.Helper()
	kafkatest.FakeOnly(t, why)
	kopts := []kfake.Opt{kfake.SeedTopics(parts, "t")}
	if listen != nil {
		kopts = append(kopts, kfake.ListenFn(listen))
	}
	c := kafkatest.NewFake(t, kopts...)
	return openTestProducer(t, c.ListenAddrs(), "t", cfg, opts...), c
}

func openTestProducer(t testing.TB, addrs []string, topic string, cfg ProducerConfig, opts ...ProducerOptions) *Producer {
	t.Helper()
	opts = append(opts, ProducerOptions{})
	client, err := (&Conn{Brokers: addrs}).ConnectProducer(opts[0], topic)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Topic = topic
	k, err := NewProducer(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// BenchmarkKafkaProducer produces batches of 1000 records of 100 bytes.
func BenchmarkKafkaProducer(b *testing.B) {
	k, _ := newTestProducer(b, 4, ProducerConfig{})
	recs := make([][]byte, 1000)
	for i := range recs {
		recs[i] = bytes.Repeat([]byte{'x'}, 99)
	}
	batch := batchtest.Of(b, '\n', recs...)
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
	k, c := newFakeProducer(t, "a broker that holds a request", 1, ProducerConfig{}, nil)
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
	go func() { done <- k.Deliver(ctx, batchtest.Of(t, '\n', []byte("a"), []byte("b"))) }()
	<-held // the broker has the request and does not answer
	cancel(errors.New("second signal"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "second signal") {
		t.Fatalf("Deliver: %v, want the cause of the cancellation", err)
	}
}

// Records that cannot be produced are rejected alone, with the reason;
// the rest of the batch is delivered.
func TestKafkaProducerRejects(t *testing.T) {
	k, _ := newTestProducer(t, 2, ProducerConfig{Unwrap: true, KeepPartition: true})
	topic := k.cfg.Topic
	b := batchtest.Of(t, '\n', []byte(`{"value":"ok","partition":1}`), []byte(`{"value":"far","partition":7}`), []byte("not json"))
	err := k.Deliver(context.Background(), b)
	var rej *batcher.RejectError
	if !errors.As(err, &rej) || len(rej.Records) != 2 {
		t.Fatalf("Deliver: %v, want 2 records rejected", err)
	}
	for i, want := range map[int]string{0: "topic " + topic + " has 2 partitions", 1: "not an envelope"} {
		r := rej.Records[i]
		if r.Index != i+1 || r.Again || !strings.Contains(r.Err.Error(), want) {
			t.Errorf("rejected %+v, want record %d for good: %q", r, i+1, want)
		}
	}
}

// readAll returns the values of topic, of parts partitions, by
// partition.
func readAll(t *testing.T, c brokers, topic string, parts int32) map[int32][]string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sc := kafkatest.Client(t, c.ListenAddrs()...)
	var total int64
	for p := range parts {
		end, err := sc.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		total += end
	}
	out := make(map[int32][]string)
	for n := int64(0); n < total; {
		fs := cl.PollFetches(context.Background())
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], string(r.Value))
			n++
		})
	}
	return out
}

// Connections lost before the broker answers: the record batch is sent
// again, and every record lands once, in order.
func TestKafkaProducerRetriesLostConnections(t *testing.T) {
	k, c := newFakeProducer(t, "connections dropped", 1, ProducerConfig{}, nil)
	drops := 0
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if drops++; drops < 3 {
			c.KeepControl()
			return nil, errors.New("connection lost"), true
		}
		return nil, nil, false
	})
	var recs [][]byte
	for i := range 100 {
		recs = append(recs, []byte(strconv.Itoa(i)))
	}
	if err := k.Deliver(context.Background(), batchtest.Of(t, '\n', recs...)); err != nil {
		t.Fatal(err)
	}
	if drops != 3 {
		t.Fatalf("%d produce requests, want 2 lost and 1 answered", drops)
	}
	got := readAll(t, c, "t", 1)[0]
	if len(got) != 100 {
		t.Fatalf("%d records, want 100", len(got))
	}
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("record %d is %q", i, v)
		}
	}
}

// A batch larger than --max-message-bytes goes as several record
// batches, in order.
func TestKafkaProducerSplits(t *testing.T) {
	k, c := newFakeProducer(t, "produce requests counted", 3, ProducerConfig{KeyDelimiter: []byte(":")}, nil, ProducerOptions{MaxMessageBytes: 1000})
	var requests atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		requests.Add(1)
		c.KeepControl()
		return nil, nil, false
	})
	b := batchtest.Of(t, '\n', orderedRecords(0, 2000)...)
	if err := k.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, readAll(t, c, "t", 3), 2000)
	// 2000 records of about 70 bytes, at most 1000 bytes a record batch.
	if r := requests.Load(); r < 140 {
		t.Fatalf("%d produce requests: the batches were not split", r)
	}
}

// Batches delivered at once (-j), numbered as the pipeline numbers them
// and each split into record batches (--max-message-bytes): every record
// lands once, and each partition has the batches' records in the order of
// the batches.
func TestKafkaProducerParallelKeepsOrder(t *testing.T) {
	k, c := newTestProducer(t, 3, ProducerConfig{KeyDelimiter: []byte(":")}, ProducerOptions{MaxMessageBytes: 1000})
	const workers, per = 4, 500
	var wg sync.WaitGroup
	for w := range workers {
		b := batchtest.Of(t, '\n', orderedRecords(w, per)...)
		b.Seq = int64(w + 1) // batchtest.Of's are all 1
		wg.Go(func() {
			defer k.Settled(b.Seq) // as the pipeline does
			if err := k.Deliver(context.Background(), b); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	checkInOrder(t, readAll(t, c, k.cfg.Topic, 3), workers*per)
}

// orderedRecords returns n records "keyK:W/IIII/x…" of batch w, K = I % 7:
// their values sort in the order of w, then of I.
func orderedRecords(w, n int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = fmt.Appendf(nil, "key%d:%d/%04d/%s", i%7, w, i, strings.Repeat("x", 50))
	}
	return recs
}

// checkInOrder checks that got, values by partition that increase in the
// order they were made, holds n records, each partition's in that order:
// none twice, none out of order.
func checkInOrder(t *testing.T, got map[int32][]string, n int) {
	t.Helper()
	seen := 0
	for p, vals := range got {
		for j := 1; j < len(vals); j++ {
			if vals[j] <= vals[j-1] {
				t.Fatalf("partition %d: %.6s after %.6s", p, vals[j], vals[j-1])
			}
		}
		seen += len(vals)
	}
	if seen != n {
		t.Fatalf("%d records, want %d", seen, n)
	}
}

// A lossyListener hangs up instead of sending the answers to the next
// lose produce requests: the broker has written their records, the
// client does not know it.
type lossyListener struct {
	net.Listener
	lose atomic.Int32
}

func (l *lossyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, l: l, produce: make(map[int32]bool)}, nil
}

type lossyConn struct {
	net.Conn
	l       *lossyListener
	mu      sync.Mutex
	in      []byte         // requests read, not yet parsed
	produce map[int32]bool // correlation ids of produce requests
}

// Read notes the correlation ids of produce requests (api key 0).
func (c *lossyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.in = append(c.in, p[:n]...)
	for len(c.in) >= 4 {
		size := int(binary.BigEndian.Uint32(c.in))
		if len(c.in) < 4+size {
			break
		}
		frame := c.in[4 : 4+size]
		if binary.BigEndian.Uint16(frame) == 0 {
			c.produce[int32(binary.BigEndian.Uint32(frame[4:]))] = true
		}
		c.in = c.in[4+size:]
	}
	return n, err
}

// Write drops the connection instead of a produce answer, while answers
// are to be lost; kfake writes each answer whole.
func (c *lossyConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	answer := len(p) >= 8 && c.produce[int32(binary.BigEndian.Uint32(p[4:]))]
	c.mu.Unlock()
	if answer && c.l.lose.Add(-1) >= 0 {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// Answers lost after the broker wrote the records: the retries carry the
// same producer id and sequence numbers, and the broker writes them once.
func TestKafkaProducerIdempotentAfterLostAnswers(t *testing.T) {
	l := &lossyListener{}
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		l.Listener = ln
		return l, err
	}
	k, c := newFakeProducer(t, "answers lost on the wire", 2, ProducerConfig{KeyDelimiter: []byte(":")}, listen)
	l.lose.Store(3)
	var recs [][]byte
	for i := range 200 {
		recs = append(recs, fmt.Appendf(nil, "k%d:%04d", i%5, i))
	}
	if err := k.Deliver(context.Background(), batchtest.Of(t, '\n', recs...)); err != nil {
		t.Fatal(err)
	}
	if n := l.lose.Load(); n > 0 {
		t.Fatalf("%d answers still to lose: the test lost fewer than 3", n)
	}
	n := 0
	for p, vals := range readAll(t, c, "t", 2) {
		for j := 1; j < len(vals); j++ {
			if vals[j] <= vals[j-1] {
				t.Fatalf("partition %d: %s after %s (a duplicate, or out of order)", p, vals[j], vals[j-1])
			}
		}
		n += len(vals)
	}
	if n != 200 {
		t.Fatalf("%d records in the topic, want the 200 sent, each once", n)
	}
}

// A broker that is, for a while, not the partition's leader: the batch is
// sent again once the metadata says where, and lands once.
func TestKafkaProducerRetriesNotLeader(t *testing.T) {
	k, c := newFakeProducer(t, "produce requests refused", 1, ProducerConfig{}, nil)
	refused := 0
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		if refused++; refused > 2 {
			return nil, nil, false
		}
		c.KeepControl()
		return kafkatest.RefuseProduce(r, kerr.NotLeaderForPartition.Code), nil, true
	})
	if err := k.Deliver(context.Background(), batchtest.Of(t, '\n', []byte("a"), []byte("b"))); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, "t", 1)[0]; refused != 3 || len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("%d produce requests, records %q; want 2 refused, then a and b once", refused, got)
	}
}

// Records rejected from several partitions are listed in batch order, so
// that those tried again keep their order.
func TestKafkaProducerRejectsInOrder(t *testing.T) {
	k, c := newFakeProducer(t, "connections dropped", 3, ProducerConfig{KeyDelimiter: []byte(":")}, nil)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, errors.New("connection lost"), true
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var recs [][]byte
	for i := range 30 {
		recs = append(recs, fmt.Appendf(nil, "k%d:%d", i, i))
	}
	k.attempts = 2
	err := k.Deliver(ctx, batchtest.Of(t, '\n', recs...))
	var rej *batcher.RejectError
	if !errors.As(err, &rej) || len(rej.Records) != 30 {
		t.Fatalf("Deliver: %v, want all 30 records to try again", err)
	}
	for i, r := range rej.Records {
		if r.Index != i || !r.Again {
			t.Fatalf("rejected[%d] = %+v, want record %d, to try again", i, r, i)
		}
	}
}
