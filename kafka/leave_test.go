package kafka

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A member stopped while its join waits for the group (here for A, which
// waits for a batch in flight before it rejoins) holds no partitions, and
// leaves the group on a connection of its own before its process ends.
// Without that leave the group counts the member gone, assigns it
// partitions and waits for it: Kafka for its session timeout, kfake for
// its rebalance timeout, both 30s here; the others get every partition
// only then.
func TestKafkaMemberStoppedWhileJoiningLeaves(t *testing.T) {
	kafkatest.FakeOnly(t, "watching the joins at the broker")
	// A join kfake leaves unanswered ends with its connection, at the
	// latest when the cluster closes: the members are waited for after.
	var members []*groupMember
	t.Cleanup(func() {
		for _, m := range members {
			<-m.k.closed
		}
	})
	c := kafkatest.NewFake(t, kfake.SeedTopics(2, "t"))
	produce(t, c, "t", []int32{0, 1}, 9) // batches of 3: none left waiting

	// B's join once C's has started a rebalance. kfake names a member
	// after its client id.
	var cJoined atomic.Bool
	bRejoins := make(chan struct{}, 1)
	c.ControlKey(kmsg.JoinGroup.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		switch id := r.(*kmsg.JoinGroupRequest).MemberID; {
		case strings.HasPrefix(id, "c-"):
			cJoined.Store(true)
		case strings.HasPrefix(id, "b-") && cJoined.Load():
			select {
			case bRejoins <- struct{}{}:
			default:
			}
		}
		return nil, nil, false
	})

	logged := make(chan struct{}, 1)
	hold := &holdSink{held: make(chan struct{}, 1), release: make(chan struct{})}
	a := joinGroup(t, c, "a", hold, logged)
	members = append(members, a)
	waitLogged(t, logged, 30*time.Second, "A assigned both partitions", func() bool {
		return covered(2, a.logs)
	})
	b := joinGroup(t, c, "b", &collect{}, logged)
	members = append(members, b)
	waitLogged(t, logged, 30*time.Second, "A and B assigned a partition each", func() bool {
		return covered(2, a.logs, b.logs)
	})

	// A holds a batch: at the next rebalance it rejoins only once the
	// batch is delivered.
	hold.hold.Store(true)
	produce(t, c, "t", []int32{0, 1}, 9)
	select {
	case <-hold.held:
	case <-time.After(30 * time.Second):
		t.Fatal("A delivered no batch")
	}
	cm := joinGroup(t, c, "c", &collect{}, logged)
	members = append(members, cm)
	select {
	case <-bRejoins:
	case <-time.After(30 * time.Second):
		t.Fatal("B did not join again")
	}
	if err := b.shutdown(); err != nil {
		t.Fatalf("B stopped while joining: %v", err)
	}
	b.dialer.cut() // B's process ends

	close(hold.release)
	start := time.Now()
	waitLogged(t, logged, 15*time.Second, "A and C assigned both partitions", func() bool {
		return covered(2, a.logs, cm.logs)
	})
	t.Logf("A and C got both partitions %v after A's batch was let go", time.Since(start).Round(time.Millisecond))
	if !b.logs.has("kafka: left the group while joining") {
		t.Fatal("B did not say it left the group")
	}
}

// covered reports whether, in one generation, the members whose logs are
// given were assigned n partitions in all.
func covered(n int, members ...*logLines) bool {
	sum := make(map[string]int)
	seen := make(map[string]int)
	for _, m := range members {
		for gen, count := range m.assigned() {
			sum[gen] += count
			seen[gen]++
		}
	}
	for gen, s := range sum {
		if s == n && seen[gen] == len(members) {
			return true
		}
	}
	return false
}

// holdSink delivers every batch; once hold is set, it holds each until
// release is closed.
type holdSink struct {
	hold    atomic.Bool
	held    chan struct{} // buffer of one: a batch is held
	release chan struct{}
}

func (s *holdSink) Deliver(ctx context.Context, b *batcher.Batch) error {
	if !s.hold.Load() {
		return nil
	}
	select {
	case s.held <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A groupMember is a source of group "g" on topic "t" with a pipeline to
// a sink, on a client of its own.
type groupMember struct {
	k      *Source
	logs   *logLines
	dialer *cutDialer
	cancel context.CancelFunc
	done   chan struct{} // the pipeline returned
	once   sync.Once
	err    error // of Shutdown
}

// joinGroup starts a member whose client id is id, shut down when the test
// ends, and its client closed. Its log lines signal logged.
func joinGroup(t *testing.T, c brokers, id string, sink batcher.Sink, logged chan struct{}) *groupMember {
	t.Helper()
	conn := Conn{Brokers: c.ListenAddrs(), ClientID: id, SessionTimeout: 30 * time.Second, RebalanceTimeout: 30 * time.Second}
	dialer := &cutDialer{}
	client, err := conn.connect(func() (*sarama.Config, error) {
		cfg, err := conn.Config()
		if err == nil {
			cfg.Net.Proxy.Enable, cfg.Net.Proxy.Dialer = true, dialer
		}
		return cfg, err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{more: logged}
	k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", Logger: slog.New(logs)})
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &groupMember{k: k, logs: logs, dialer: dialer, cancel: cancel, done: make(chan struct{})}
	p := &batcher.Pipeline{Source: k, Sink: sink, Config: batcher.Config{MaxRecords: 3, Delim: '\n'}}
	go func() {
		defer close(m.done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		m.shutdown()
		client.Close()
	})
	return m
}

// shutdown stops the pipeline and shuts the source down, giving it 10s,
// and returns Shutdown's error.
func (m *groupMember) shutdown() error {
	m.once.Do(func() {
		m.cancel()
		<-m.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.err = m.k.Shutdown(ctx)
	})
	return m.err
}

// cutDialer dials as sarama does until cut, which closes every connection
// it made and refuses more, as the end of the process would: closing a
// client waits for the answer to each request under way.
type cutDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	gone  bool
}

func (d *cutDialer) Dial(network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return nil, errors.New("the process has ended")
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).Dial(network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gone = true
	for _, c := range d.conns {
		c.Close()
	}
}

// logLines is a slog.Handler that keeps every line, for a test to wait on.
type logLines struct {
	mu    sync.Mutex
	lines []logLine
	more  chan struct{} // buffer of one: a line was added
}

type logLine struct {
	msg   string
	attrs map[string]string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }

func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	line := logLine{msg: r.Message, attrs: make(map[string]string)}
	r.Attrs(func(a slog.Attr) bool {
		line.attrs[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	return nil
}

// assigned returns the partitions assigned to the member per generation.
func (l *logLines) assigned() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := make(map[string]int)
	for _, line := range l.lines {
		if line.msg == "kafka: assigned" {
			counts[line.attrs["generation"]], _ = strconv.Atoi(line.attrs["count"])
		}
	}
	return counts
}

// has reports whether msg was logged.
func (l *logLines) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if line.msg == msg {
			return true
		}
	}
	return false
}

// waitLogged waits until ok holds, checking it at each line logged; the
// test fails if it does not within d.
func waitLogged(t *testing.T, logged <-chan struct{}, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !ok() {
		select {
		case <-logged:
		case <-deadline.C:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}
