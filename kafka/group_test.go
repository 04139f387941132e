package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// What a stats file, the metrics or the status line read right after a
// "kafka: assigned" line show is the assignment the line announces: its
// generation and partitions, no lag of the partitions the rebalance gave
// to another member, and the pause the rebalance caused. The state is read
// in the logger, as the line is written: a reader after it sees no less.
// Two members whose records nobody takes: the second one's join makes the
// first give up a partition with all its records unread.
func TestKafkaAssignedLineFollowsState(t *testing.T) {
	c := kafkatest.NewFake(t, kfake.SeedTopics(2, "t"))
	produce(t, c, "t", []int32{0, 1}, 9)
	logged := make(chan struct{}, 1)
	a := stalledMember(t, c, "a", logged)
	waitLogged(t, logged, 30*time.Second, "A assigned both partitions", func() bool {
		return covered(2, a.logLines)
	})
	b := stalledMember(t, c, "b", logged)
	waitLogged(t, logged, 30*time.Second, "A and B assigned a partition each", func() bool {
		return covered(2, a.logLines, b.logLines)
	})
	b.stop()
	a.stop()
	for _, m := range []*lineCheck{a, b} {
		for _, e := range m.errs() {
			t.Error(e)
		}
	}
}

// lineCheck is a member's logger: at each "kafka: assigned" line it reads
// the member's state and notes where it differs from the line, then keeps
// the line.
type lineCheck struct {
	*logLines
	src  atomic.Pointer[Source]
	stop func()

	mu       sync.Mutex
	problems []string
}

func (l *lineCheck) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lineCheck) WithGroup(string) slog.Handler      { return l }

func (l *lineCheck) Handle(ctx context.Context, r slog.Record) error {
	if k := l.src.Load(); k != nil && r.Message == "kafka: assigned" {
		l.check(k, r)
	}
	return l.logLines.Handle(ctx, r)
}

// check compares k's state with the assigned line r.
func (l *lineCheck) check(k *Source, r slog.Record) {
	attrs := make(map[string]string)
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	var parts []string
	for p := range strings.FieldsSeq(attrs["partitions"]) {
		parts = append(parts, p[:strings.IndexByte(p, ':')])
	}
	var lagged []string
	for _, pl := range k.PartitionLag() {
		lagged = append(lagged, fmt.Sprintf("%s[%d]", pl.Topic, pl.Partition))
	}
	g := k.GroupState()
	var problems []string
	if gen := fmt.Sprint(g.Generation); gen != attrs["generation"] {
		problems = append(problems, "generation "+gen)
	}
	if !slices.Equal(g.Partitions, parts) {
		problems = append(problems, fmt.Sprintf("partitions %v", g.Partitions))
	}
	if !slices.Equal(lagged, parts) {
		problems = append(problems, fmt.Sprintf("lag of %v", lagged))
	}
	if g.Rebalances > 0 && g.Paused == 0 {
		problems = append(problems, fmt.Sprintf("%d rebalances and no pause", g.Rebalances))
	}
	if problems != nil {
		l.mu.Lock()
		l.problems = append(l.problems, fmt.Sprintf("at %q %v: %s", r.Message, attrs, strings.Join(problems, ", ")))
		l.mu.Unlock()
	}
}

func (l *lineCheck) errs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.problems)
}

// stalledMember starts a member of group "g" on topic "t" whose client id
// is id, and whose records nobody takes: they stay unread, in its lag. Its
// lines signal logged.
func stalledMember(t *testing.T, c brokers, id string, logged chan struct{}) *lineCheck {
	t.Helper()
	conn := Conn{Brokers: c.ListenAddrs(), ClientID: id, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second}
	client, err := conn.Connect()
	if err != nil {
		t.Fatal(err)
	}
	l := &lineCheck{logLines: &logLines{more: logged}}
	k, err := OpenSource(client, SourceConfig{Topics: []string{"t"}, Group: "g", Logger: slog.New(l)})
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	l.src.Store(k)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.Run(ctx, make(chan []batcher.Record))
	}()
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			k.Close()
			client.Close()
		})
	}
	t.Cleanup(l.stop)
	return l
}
