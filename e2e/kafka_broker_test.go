package e2e

// Kafka end-to-end tests of what a broker does to a topic under the reader:
// compaction, deleted records, transactions, members that die. They run on
// kfake and on the real broker (see e2e_kafka_env_test.go), except
// compaction, which only a real log cleaner does.

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A compacted topic: the log cleaner removed every record but the last of
// each key, leaving gaps in the offsets below the end, which is a
// transaction marker. --until-end finishes, alone and as a group, and
// delivers exactly the records kept.
func TestKafkaCompactedTopic(t *testing.T) {
	if realKafka == nil {
		t.Skip("real broker only (kfake has no log cleaner): set BATCHPIPE_TEST_KAFKA, or make test-kafka-real")
	}
	k := newKafka(t, 0)
	const keys, rounds = 100, 5
	topic := k.name("compacted")
	// Every batch that is 1s younger than a segment's first rolls a new
	// one, so the cleaner may clean every round; only the last record, in
	// the active segment, is left alone.
	kafkatest.CreateTopic(t, k.addr, topic, 1, "cleanup.policy", "compact", "segment.ms", "1000",
		"min.cleanable.dirty.ratio", "0.01", "delete.retention.ms", "0")
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Now().Add(-time.Hour)
	for r := range rounds + 1 {
		var recs []*kgo.Record
		for key := range keys {
			if r == rounds && key > 0 {
				break
			}
			name := fmt.Sprintf("k%d", key)
			if r == rounds {
				name = "last"
			}
			off := r*keys + key // the offset it gets
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(name), Value: []byte(value(0, off)),
				Timestamp: base.Add(time.Duration(r) * 10 * time.Second)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	end := int64(rounds*keys + 1)
	kept := func() map[int64]bool {
		want := map[int64]bool{end - 1: true}
		for key := range keys {
			want[int64((rounds-1)*keys+key)] = true
		}
		return want
	}()
	kafkatest.Eventually(t, "compaction down to the last record of each key", func() bool {
		msgs := readTopic(t, k.addr, topic)
		if len(msgs) != len(kept) {
			return false
		}
		for _, m := range msgs {
			if !kept[m.Offset] {
				return false
			}
		}
		return true
	})

	// Then two transactions of a record each: the log ends with a commit
	// marker, which the cleaner may remove from below the end.
	pr := &producer{t: t, next: map[int32]int{0: int(end)}}
	pr.produceTxn(k.addr, topic, k.name("txn"), []int32{0}, 1)
	pr.next[0]++ // the marker
	pr.produceTxn(k.addr, topic, k.name("txn"), []int32{0}, 1)
	kept[end], kept[end+2] = true, true
	end += 4

	for _, group := range []string{"", k.name("g")} {
		t.Run("group="+group, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"--kafka-brokers", k.addr, "--topic", topic, "--until-end", "-n", "30", "file", out}
			if group != "" {
				args = append([]string{"--group", group}, args...)
			}
			r := run(t, nil, args...)
			if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("drained %d records from 1 topic, lag 0", len(kept))) {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			got := map[int64]int{}
			for _, l := range fileLines(t, out) {
				_, off := parseValue(t, l)
				got[off]++
			}
			for off := range kept {
				if got[off] != 1 {
					t.Fatalf("record at offset %d delivered %d times, want once", off, got[off])
				}
			}
			if len(got) != len(kept) {
				t.Fatalf("%d records delivered, want the %d kept", len(got), len(kept))
			}
			if group != "" {
				if o := committedOffsets(t, k.addr, topic, group, []int32{0})[0]; o != end {
					t.Fatalf("committed %d, want the end, %d", o, end)
				}
			}
		})
	}
}

// Records deleted (DeleteRecords) past a group's committed offset were
// never read: the drain fails naming the partition, and commits nothing
// there; records deleted below the committed offset change nothing.
func TestKafkaDeletedRecords(t *testing.T) {
	k := newKafka(t, 4)
	pr := newProducer(t, k.addr)
	pr.produce(k.topic, parts4, 300)
	drainFrom(t, k, nil, 300) // commits 300 on each partition
	pr.produce(k.topic, parts4, 700)
	admin := clusterAdmin(t, k.addr)
	defer admin.Close()
	// Partition 0 loses records already read, partition 1 records never read.
	if err := admin.DeleteRecords(k.topic, map[int32]int64{0: 100, 1: 800}); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "100", "file", "-")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{k.topic + "[1]: ", "committed offset 300 is outside the offsets kept (800-1000)"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("no %q in:\n%s", want, r.stderr)
		}
	}
	for _, p := range []int32{0, 2, 3} {
		if strings.Contains(r.stderr, fmt.Sprintf("%s[%d]", k.topic, p)) {
			t.Errorf("partition %d named, though its records from the committed offset are all kept:\n%s", p, r.stderr)
		}
	}
	if o := committedOffsets(t, k.addr, k.topic, k.group, parts4)[1]; o != 300 {
		t.Errorf("partition 1: committed %d, want 300, as it was", o)
	}
}

// A topic written by a transactional producer, some transactions committed
// and some aborted, ending with an abort marker: a drain delivers exactly
// the committed records and exits 0, alone and as a group, like kcat
// (read_committed); --isolation read_uncommitted delivers the aborted ones
// too.
func TestKafkaAbortedTransactions(t *testing.T) {
	k := newKafka(t, 4)
	pr := newProducer(t, k.addr)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.TransactionalID(k.name("txn")),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	aborted := 0
	for i, commit := range []bool{true, false, true, true, false} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for _, p := range parts4 {
			for range 250 {
				n := pr.next[p]
				if commit {
					pr.next[p]++
				} else {
					n = 1_000_000 + aborted // never a committed record's number
					aborted++
				}
				recs = append(recs, &kgo.Record{Topic: k.topic, Partition: p, Value: []byte(value(p, n))})
			}
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(context.Background(), kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	kafkatest.WaitStable(t, k.addr, k.topic)
	// Per partition: 750 committed records, 500 aborted, 5 markers.
	const end = 1255
	for _, tc := range []struct {
		name, group string
		dirty       bool
	}{
		{"alone", "", false},
		{"group", k.name("g"), false},
		{"read_uncommitted", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"--kafka-brokers", k.addr, "--topic", k.topic, "--until-end", "-n", "300", "file", out}
			if tc.group != "" {
				args = append([]string{"--group", tc.group}, args...)
			}
			if tc.dirty {
				args = append([]string{"--isolation", "read_uncommitted"}, args...)
			}
			r := run(t, nil, args...)
			d := delivered{}
			d.add(t, fileLines(t, out)...)
			n := 0
			for _, offs := range d {
				for i, c := range offs {
					if i >= 1_000_000 {
						n += c
						delete(offs, i)
					}
				}
			}
			want := 0
			if tc.dirty {
				want = aborted
			}
			if n != want {
				t.Fatalf("%d records of aborted transactions delivered, want %d", n, want)
			}
			drained := fmt.Sprintf("drained %d records from 1 topic, lag 0", 3000+want)
			if r.code != 0 || !strings.Contains(r.stderr, drained) {
				t.Fatalf("exit %d, want 0 and %q:\n%s", r.code, drained, r.stderr)
			}
			wantExactly(t, d, nil, each(parts4, 750))
			if tc.group == "" {
				return
			}
			for p, o := range committedOffsets(t, k.addr, k.topic, tc.group, parts4) {
				if o != end {
					t.Errorf("partition %d: committed %d, want %d, past the abort marker", p, o, end)
				}
			}
		})
	}
}

// A group read without --until-end, of a topic that ends in an aborted
// transaction: once the committed records are delivered, the group's
// offsets pass the aborted records and the markers to the log end, so its
// lag reaches 0 though no record is left to read; records produced after
// are read and committed from there.
func TestKafkaGroupCommitsPastTransactionTail(t *testing.T) {
	k := newKafka(t, 4)
	pr := newProducer(t, k.addr)
	pr.produceTxn(k.addr, k.topic, k.name("txn"), parts4, 250)     // 0-249, a commit marker at 250
	produceAborted(t, k.addr, k.topic, k.name("txn"), parts4, 500) // 251-750, an abort marker at 751
	kafkatest.WaitStable(t, k.addr, k.topic)
	out := filepath.Join(t.TempDir(), "out")
	p := start(t, "-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "-n", "100",
		"--commit-interval", "50ms", "file", out)
	committedTo := func(end int64) func([]string) bool {
		return func(lines []string) bool {
			at := make(map[string]string) // the last offset committed, by partition
			for _, l := range lines {
				if strings.Contains(l, "kafka: committed") {
					part, _ := logValue(l, "partition")
					at[part], _ = logValue(l, "offset")
				}
			}
			n := 0
			for _, off := range at {
				if off == strconv.FormatInt(end, 10) {
					n++
				}
			}
			return n == len(parts4)
		}
	}
	p.waitForLines("commits at the log end, past the aborted tail", committedTo(752))
	for part, o := range committedOffsets(t, k.addr, k.topic, k.group, parts4) {
		if o != 752 {
			t.Fatalf("partition %d: committed %d, want the log end, 752", part, o)
		}
	}
	pr.produce(k.topic, parts4, 100) // offsets 752-851
	p.waitForLines("commits of the records produced after the tail", committedTo(852))
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d, want 143:\n%s", code, p.stderr())
	}
	if !strings.Contains(p.stderr(), "kafka: 1400 records read from 1 topic, lag 0") {
		t.Fatalf("no lag 0 in the summary:\n%s", p.stderr())
	}
	// Numbered 0-349 per partition (the aborted ones from 1,000,000).
	d := delivered{}
	d.add(t, fileLines(t, out)...)
	wantExactly(t, d, nil, each(parts4, 350))
	for part, o := range committedOffsets(t, k.addr, k.topic, k.group, parts4) {
		if o != 852 {
			t.Errorf("partition %d: committed %d, want the log end, 852", part, o)
		}
	}
}

// The same with --exactly-once to Kafka, where the transactions commit the
// offsets: none passes the tail, so the source commits it, and the copy
// holds every committed record once. With --until-end, the drain's offsets
// are at the log end too, not at the last record.
func TestKafkaTxnSinkCommitsPastTransactionTail(t *testing.T) {
	k := newKafka(t, 4)
	pr := newProducer(t, k.addr)
	pr.produceTxn(k.addr, k.topic, k.name("txn"), parts4, 250)     // 0-249, a commit marker at 250
	produceAborted(t, k.addr, k.topic, k.name("txn"), parts4, 500) // 251-750, an abort marker at 751
	kafkatest.WaitStable(t, k.addr, k.topic)
	for _, untilEnd := range []bool{false, true} {
		t.Run(fmt.Sprintf("until-end=%v", untilEnd), func(t *testing.T) {
			out, group := k.name(fmt.Sprintf("copy-%v", untilEnd)), k.name(fmt.Sprintf("g-%v", untilEnd))
			kafkatest.CreateTopic(t, k.addr, out, 4)
			args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", group, "--exactly-once",
				"-n", "100", "--commit-interval", "50ms", "kafka", out}
			if untilEnd {
				r := run(t, nil, append([]string{"--until-end"}, args...)...)
				if r.code != 0 || !strings.Contains(r.stderr, "drained 1000 records from 1 topic, lag 0") {
					t.Fatalf("exit %d:\n%s", r.code, r.stderr)
				}
			} else {
				p := start(t, args...)
				p.waitForLines("commits at the log end, past the aborted tail", func(lines []string) bool {
					n := 0
					for _, l := range lines {
						if off, _ := logValue(l, "offset"); strings.Contains(l, "kafka: committed") && off == "752" {
							n++
						}
					}
					return n == len(parts4)
				})
				p.signal(syscall.SIGTERM)
				if code := p.wait(); code != 143 {
					t.Fatalf("exit %d, want 143:\n%s", code, p.stderr())
				}
			}
			checkCopiedOnce(t, readCommitted(t, k.addr, out), 250)
			for part, o := range committedOffsets(t, k.addr, k.topic, group, parts4) {
				if o != 752 {
					t.Errorf("partition %d: committed %d, want the log end, 752", part, o)
				}
			}
		})
	}
}

// produceAborted writes n records to each partition listed in one aborted
// transaction, so that each ends with an abort marker. The records' values
// are those of the numbers they would have had.
func produceAborted(t *testing.T, addr, topic, txnID string, parts []int32, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID(txnID), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, p := range parts {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(value(p, 1_000_000+i))})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(context.Background(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
}

// stream sends every line of the fifo to lines until the sentinel, then
// closes done.
func (f *fifo) stream(lines chan<- string, done chan<- error) {
	f.f.SetReadDeadline(time.Now().Add(5 * time.Minute))
	for {
		l, err := f.r.ReadString('\n')
		if err != nil {
			done <- err
			return
		}
		l = strings.TrimSuffix(l, "\n")
		if strings.Contains(l, sentinel) {
			done <- nil
			return
		}
		lines <- l
	}
}

// Three members of a group; one is killed with SIGKILL while it holds
// partitions. The other two take them over once its session ends and go
// on; every record is delivered, and a final drain finishes with the end
// committed.
func TestKafkaGroupThreeMembersOneKilled(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	if realKafka == nil {
		// Members whose batches wait on an unread pipe hold each
		// rebalance for the in-flight wait; kfake then keeps a join
		// that arrives as it completes one waiting for good.
		t.Skip("real broker only (kfake loses a join that arrives while a rebalance completes): set BATCHPIPE_TEST_KAFKA, or make test-kafka-real")
	}
	const perPartition = 5000
	k := newKafka(t, 4)
	newProducer(t, k.addr).produce(k.topic, parts4, perPartition)
	args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "-n", "100",
		"--kafka-session-timeout", "1s", "--kafka-rebalance-timeout", "2s", "--commit-interval", "50ms", "file"}
	var ps []*proc
	var fs []*fifo
	for range 3 {
		f := newFIFO(t)
		p := start(t, append(args, f.path)...)
		p.waitFor("kafka: assigned")
		ps, fs = append(ps, p), append(fs, f)
	}
	// Nothing is read from the pipes yet, so no member gets far; wait for
	// the assignment that shares the four partitions among the three.
	shared := func() bool {
		sum := 0
		for _, p := range ps {
			p.mu.Lock()
			n := assignedCount(p.lines)
			p.mu.Unlock()
			if n < 1 {
				return false
			}
			sum += n
		}
		return sum == 4
	}
	for _, p := range ps {
		p.waitForLines("a share of the four partitions", func([]string) bool { return shared() })
	}
	victim := ps[0]
	victim.signal(syscall.SIGKILL)
	victim.wait()
	d := delivered{}
	d.add(t, fs[0].rest()...)

	lines := make(chan string)
	done := make(chan error, 2)
	for _, f := range fs[1:] {
		go f.stream(lines, done)
	}
	for !d.covers(parts4, perPartition) {
		select {
		case l := <-lines:
			d.add(t, l)
		case err := <-done:
			t.Fatalf("a member's output ended: %v:\n%s\n%s", err, ps[1].stderr(), ps[2].stderr())
		}
	}
	for _, p := range ps[1:] {
		p.signal(syscall.SIGTERM)
	}
	// Go on reading while they stop: their last batches are in the pipes.
	stopped := make(chan struct{})
	go func() {
		for _, p := range ps[1:] {
			<-p.waited
		}
		for _, f := range fs[1:] {
			f.f.WriteString(sentinel + "\n")
		}
		close(stopped)
	}()
	for ended := 0; ended < 2; {
		select {
		case l := <-lines:
			d.add(t, l)
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			ended++
		}
	}
	<-stopped
	for _, p := range ps[1:] {
		if code := p.wait(); code != 143 {
			t.Fatalf("exit %d, want 143:\n%s", code, p.stderr())
		}
	}
	committed := committedOffsets(t, k.addr, k.topic, k.group, parts4)
	last := drainFrom(t, k, committed, perPartition)
	t.Logf("%d records delivered by the members, %d of them twice; %d by the final drain", d.count(), d.count()-4*perPartition, last.count())
}

// groupState returns the state of group and its count of members.
func groupState(t *testing.T, admin sarama.ClusterAdmin, group string) (string, int) {
	t.Helper()
	ds, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(ds) != 1 {
		t.Fatalf("describe group %s: %v", group, err)
	}
	return ds[0].State, len(ds[0].Members)
}

// Ten members killed with SIGKILL in turn while they join the group (the
// broker has them as members, the rebalance is not over): a drain then
// finishes within the session timeout and 30 s, exit 0, the end committed.
func TestKafkaKillsWhileJoining(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	if realKafka == nil {
		// A member killed in the middle of a join stays in kfake's
		// group for good.
		t.Skip("real broker only (kfake keeps a member killed while it joins): set BATCHPIPE_TEST_KAFKA, or make test-kafka-real")
	}
	const perPartition = 1000
	k := newKafka(t, 4)
	newProducer(t, k.addr).produce(k.topic, parts4, perPartition)
	admin := clusterAdmin(t, k.addr)
	defer admin.Close()
	for i := range 10 {
		_, before := groupState(t, admin, k.group)
		p := start(t, "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "file", "/dev/null")
		kafkatest.Eventually(t, fmt.Sprintf("member %d in the group", i), func() bool {
			state, n := groupState(t, admin, k.group)
			return n > before || state == "PreparingRebalance" || state == "CompletingRebalance"
		})
		p.signal(syscall.SIGKILL)
		p.wait()
	}
	began := time.Now()
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, nil, "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--until-end", "file", out)
	took := time.Since(began)
	if r.code != 0 {
		t.Fatalf("drain: exit %d after %v:\n%s", r.code, took, r.stderr)
	}
	if took > 40*time.Second { // the default session timeout, 10s, and 30s
		t.Fatalf("drain took %v, more than the session timeout and 30s:\n%s", took, r.stderr)
	}
	for p, o := range committedOffsets(t, k.addr, k.topic, k.group, parts4) {
		if o != perPartition {
			t.Errorf("partition %d: committed %d, want %d", p, o, perPartition)
		}
	}
	t.Logf("drain took %v", took)
}
