package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/batchtest"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runKafkaPipeline delivers n records "kK:NNNNN" (K = i % keys) through a
// pipeline of -n per and -j jobs to k, and checks that every partition
// holds its keys' records once each, in order.
func runKafkaPipeline(t *testing.T, k *Producer, c brokers, parts int32, n, keys, per, jobs int) batcher.Stats {
	t.Helper()
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = fmt.Appendf(nil, "k%d:%05d", i%keys, i)
	}
	p := &batcher.Pipeline{
		Source: batchtest.Records(recs...),
		Sink:   k,
		Config: batcher.Config{MaxRecords: per, MaxBytes: 1 << 30, Delim: '\n', Parallel: jobs, Retries: 10},
	}
	st, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Delivered != int64(n) {
		t.Fatalf("%d records delivered, want %d", st.Delivered, n)
	}
	checkInOrder(t, readAll(t, c, k.cfg.Topic, parts), n)
	return st
}

// Batches delivered at once (-j) follow one another down the connection,
// and whatever fails in flight (a partition without its leader, a lost
// connection, answers lost after the records were written), every
// partition ends with its records once each, in the order of the input.
func TestKafkaProducerInFlightKeepsOrder(t *testing.T) {
	refuse := func(code int16) func(c *kfake.Cluster, r kmsg.Request) (kmsg.Response, error, bool) {
		return func(_ *kfake.Cluster, r kmsg.Request) (kmsg.Response, error, bool) {
			return kafkatest.RefuseProduce(r, code), nil, true
		}
	}
	for _, tc := range []struct {
		name string
		// fault answers produce requests number from, from+1… (from 1)
		// while it returns handled.
		fault func(c *kfake.Cluster, r kmsg.Request) (kmsg.Response, error, bool)
		from  int
		times int
		lose  int32 // answers lost after the records are written
		// attempts, if set, is the sink's per delivery: fewer than
		// the faults, and the pipeline tries records again.
		attempts int
		// part0, if set, limits the faults to partition 0's requests.
		part0 bool
	}{
		{name: "clean"},
		{name: "not leader", fault: refuse(kerr.NotLeaderForPartition.Code), from: 5, times: 3},
		{name: "connection lost", fault: func(*kfake.Cluster, kmsg.Request) (kmsg.Response, error, bool) {
			return nil, errors.New("connection lost"), true
		}, from: 4, times: 2},
		{name: "timed out", fault: refuse(kerr.RequestTimedOut.Code), from: 3, times: 1},
		{name: "answers lost", lose: 3},
		{name: "given up", fault: refuse(kerr.NotLeaderForPartition.Code), from: 2, times: 8, attempts: 2, part0: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ProducerConfig{KeyDelimiter: []byte(":")}
			if tc.fault == nil && tc.lose == 0 {
				// Nothing to inject: kfake, or the real broker.
				k, c := newTestProducer(t, 3, cfg)
				runKafkaPipeline(t, k, c, 3, 3000, 4, 30, 5)
				return
			}
			l := &lossyListener{}
			listen := func(network, addr string) (net.Listener, error) {
				ln, err := net.Listen(network, addr)
				l.Listener = ln
				return l, err
			}
			k, c := newFakeProducer(t, "faults injected into produce requests", 3, cfg, listen)
			var mu sync.Mutex
			seen, faults := 0, 0
			c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				if tc.part0 && r.(*kmsg.ProduceRequest).Topics[0].Partitions[0].Partition != 0 {
					return nil, nil, false
				}
				mu.Lock()
				seen++
				hit := tc.fault != nil && seen >= tc.from && faults < tc.times
				if hit {
					faults++
				}
				mu.Unlock()
				if hit {
					return tc.fault(c, r)
				}
				return nil, nil, false
			})
			l.lose.Store(tc.lose)
			if tc.attempts > 0 {
				k.attempts = tc.attempts
			}
			st := runKafkaPipeline(t, k, c, 3, 3000, 4, 30, 5)
			if tc.attempts > 0 && st.Retries == 0 {
				t.Fatal("no records tried again by the pipeline: the sink never gave up")
			}
			if faults != tc.times {
				t.Fatalf("%d faults, want %d", faults, tc.times)
			}
			if n := l.lose.Load(); n > 0 {
				t.Fatalf("%d answers still to lose", n)
			}
		})
	}
}

// A countingListener counts the produce requests read on its connections
// and the answers written, and holds the first answer until hold requests
// are in: a client that waits for each answer before the next request
// never gets there.
type countingListener struct {
	net.Listener
	hold int

	mu       sync.Mutex
	requests int
	answered bool
	in       chan struct{} // closed once hold requests are in
	peak     int           // requests in when the first answer went
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{lossyConn: lossyConn{Conn: c, l: &lossyListener{}, produce: make(map[int32]bool)}, cl: l}, nil
}

type countingConn struct {
	lossyConn
	cl *countingListener
}

func (c *countingConn) Read(p []byte) (int, error) {
	before := c.produceCount()
	n, err := c.lossyConn.Read(p)
	if d := c.produceCount() - before; d > 0 {
		c.cl.mu.Lock()
		c.cl.requests += d
		if c.cl.requests >= c.cl.hold && c.cl.in != nil {
			close(c.cl.in)
			c.cl.in = nil
		}
		c.cl.mu.Unlock()
	}
	return n, err
}

func (c *countingConn) produceCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.produce)
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	answer := len(p) >= 8 && c.produce[int32(binary.BigEndian.Uint32(p[4:]))]
	c.mu.Unlock()
	if answer {
		c.cl.mu.Lock()
		first, in := !c.cl.answered, c.cl.in
		c.cl.answered = true
		c.cl.mu.Unlock()
		if first {
			if in != nil {
				// Bounded, so that a client that waits fails the
				// test rather than hanging it.
				select {
				case <-in:
				case <-time.After(10 * time.Second):
				}
			}
			c.cl.mu.Lock()
			c.cl.peak = c.cl.requests
			c.cl.mu.Unlock()
		}
	}
	return c.Conn.Write(p)
}

// With -j 3 a second record batch goes out before the first is answered:
// the requests are pipelined on the broker's one connection.
func TestKafkaProducerPipelines(t *testing.T) {
	l := &countingListener{hold: 2, in: make(chan struct{})}
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		l.Listener = ln
		return l, err
	}
	k, c := newFakeProducer(t, "a listener that counts requests", 3, ProducerConfig{}, listen)
	runKafkaPipeline(t, k, c, 3, 300, 1, 10, 3)
	if l.peak < 2 {
		t.Fatalf("%d produce requests in when the first was answered, want 2 in flight", l.peak)
	}
}

// A batch's first attempt waits until every batch before it has sent, or
// settled without; one tried again, or without a Seq, does not wait.
func TestSendOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newSendOrder()
		through := make(chan int64, 10)
		wait := func(seq int64) {
			go func() {
				if err := o.wait(t.Context(), seq); err != nil {
					t.Error(err)
				}
				through <- seq
			}()
		}
		// want checks that exactly seqs went through since the last call.
		want := func(seqs ...int64) {
			t.Helper()
			synctest.Wait()
			got := map[int64]bool{}
			for len(through) > 0 {
				got[<-through] = true
			}
			if len(got) != len(seqs) {
				t.Fatalf("batches %v through, want %v", got, seqs)
			}
			for _, s := range seqs {
				if !got[s] {
					t.Fatalf("batches %v through, want %v", got, seqs)
				}
			}
		}
		wait(2)
		wait(4)
		wait(0)
		wait(1)
		want(0, 1)
		o.pass(1)
		want(2)
		o.pass(3) // settled without sending, before batch 2 sent
		want()
		o.pass(2)
		want(4)
		wait(2) // tried again
		wait(3)
		want(2, 3)
	})
}

// The broker takes any first sequence number from a producer id it has no
// state of on a partition (Kafka 2.5+, KIP-360): were the first record
// batch of an id refused and those sent behind it written, they would land
// before it. It goes alone, and those behind it after its answer.
func TestKafkaProducerFirstRecordBatchAlone(t *testing.T) {
	l := &countingListener{}
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		l.Listener = ln
		return l, err
	}
	k, c := newFakeProducer(t, "a produce request refused", 1, ProducerConfig{KeyDelimiter: []byte(":")}, listen,
		ProducerOptions{MaxMessageBytes: 1000})
	// kfake, as Kafka, takes any first sequence number on a partition
	// that has held records.
	kafkatest.Send(t, kafkatest.NewProducer(t, c.ListenAddrs()...),
		[]*sarama.ProducerMessage{{Topic: "t", Value: sarama.StringEncoder("-seed")}})
	second := make(chan struct{}) // closed once a second produce request of k's is in
	l.mu.Lock()
	l.hold, l.in = l.requests+2, second
	l.mu.Unlock()
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		// k's first request, refused once a second is in behind it, if
		// one comes: the test waits a second for it.
		wait := time.NewTimer(time.Second)
		defer wait.Stop()
		select {
		case <-second:
		case <-wait.C:
		}
		return kafkatest.RefuseProduce(r, kerr.NotLeaderForPartition.Code), nil, true
	})
	b := batchtest.Of(t, '\n', orderedRecords(0, 200)...)
	if err := k.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, readAll(t, c, "t", 1), 201)
}

// Record batches follow one another unanswered only while the broker
// knows the producer id on the partition: once one of it was written
// there, and not after the partition was idle for forgetAfter, when the
// broker may have let the id expire.
func TestPartitionKnownProducerID(t *testing.T) {
	st := &partitionState{changed: make(chan struct{})}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st.restart(1)
	if st.known(1, start) {
		t.Fatal("known before a record batch was written")
	}
	st.written = start
	for _, c := range []struct {
		gen  int
		at   time.Duration
		want bool
	}{
		{1, 0, true},
		{1, forgetAfter - time.Second, true},
		{1, forgetAfter, false},
		{2, 0, false}, // a new producer id
	} {
		if got := st.known(c.gen, start.Add(c.at)); got != c.want {
			t.Errorf("generation %d, %v after the last write: known %v, want %v", c.gen, c.at, got, c.want)
		}
	}
	st.restart(2)
	if st.known(2, start) {
		t.Fatal("known after a new producer id, before a record batch of it was written")
	}
}
