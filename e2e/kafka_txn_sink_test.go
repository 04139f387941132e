package e2e

// End-to-end tests of --exactly-once from Kafka to Kafka: each batch one
// transaction with the source offsets it completes, so a read_committed
// reader of the output sees every source record once, whatever kills
// batchpipe.

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
)

// kill -9 ten times during a Kafka → Kafka copy with --exactly-once, each
// run with another -n, then a run to the end: a read_committed reader of
// the output sees every source record exactly once, and the group's
// offsets are at the end.
func TestKafkaTxnSinkKills(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition = 50000
	s := *exactlySeed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d: -exactly-seed %d picks the same kill points", s, s)
	rng := rand.New(rand.NewPCG(s, 2))
	k := newKafka(t, 4)
	out := k.name("copy")
	kafkatest.CreateTopic(t, k.addr, out, 4)
	newProducer(t, k.addr).produce(k.topic, parts4, perPartition)
	args := func(n int) []string {
		return []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end",
			"-n", strconv.Itoa(n), "-j", "4", "--kafka-session-timeout", "1s", "kafka", out}
	}
	kills := 0
	for kill := range 10 {
		n := 50 + rng.IntN(3000)
		p := start(t, args(n)...)
		want := 1 + rng.IntN(12)
		p.waitLine(fmt.Sprintf("%d batches delivered, or the end", want), func(string) bool {
			e := p.stderr()
			return strings.Count(e, "outcome=delivered") >= want || strings.Contains(e, "drained")
		})
		p.signal(syscall.SIGKILL)
		if code := p.wait(); code == 0 {
			t.Logf("run %d finished before the kill", kill)
			break
		}
		kills++
	}
	r := run(t, nil, args(777)...)
	if r.code != 0 {
		t.Fatalf("final run: exit %d:\n%s", r.code, r.stderr)
	}
	if kills < 10 {
		t.Fatalf("only %d kills landed before the copy was done: make the input larger", kills)
	}
	checkCopiedOnce(t, readCommitted(t, k.addr, out), perPartition)
	for p, off := range committedOffsets(t, k.addr, k.topic, k.group, parts4) {
		if off != perPartition {
			t.Fatalf("group offset of partition %d is %d, want %d", p, off, perPartition)
		}
	}
	t.Logf("%d kills", kills)
}

// A member that lost its partitions and comes back with an old
// transaction is fenced: two runs copy the same partitions at once into
// one topic (both with the group, so each gets some; a rebalance moves
// them while batches are in transactions), and the output holds each
// record once.
func TestKafkaTxnSinkTwoMembers(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition = 50000
	k := newKafka(t, 4)
	out := k.name("copy")
	kafkatest.CreateTopic(t, k.addr, out, 4)
	newProducer(t, k.addr).produce(k.topic, parts4, perPartition)
	args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end",
		"-n", "100", "--kafka-session-timeout", "1s", "kafka", out}
	p1 := start(t, args...)
	p1.waitLine("a batch delivered", func(string) bool { return strings.Contains(p1.stderr(), "outcome=delivered") })
	p2 := start(t, args...)
	c1, c2 := p1.wait(), p2.wait()
	if c1 != 0 || c2 != 0 {
		t.Fatalf("exits %d and %d:\n%s\n---\n%s", c1, c2, p1.stderr(), p2.stderr())
	}
	if !strings.Contains(p2.stderr(), "outcome=delivered") {
		t.Fatalf("the second member delivered nothing: the first was done before it joined")
	}
	// A member that stopped while the other still held partitions leaves
	// them to it: a last run finishes whatever is left.
	if r := run(t, nil, args...); r.code != 0 {
		t.Fatalf("last run: exit %d:\n%s", r.code, r.stderr)
	}
	checkCopiedOnce(t, readCommitted(t, k.addr, out), perPartition)
}

func TestKafkaTxnSinkUsage(t *testing.T) {
	checkUsage(t, []usageCase{
		{[]string{"--exactly-once", "kafka", "--brokers", "127.0.0.1:1", "out"}, "stdin cannot be read again"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--exactly-once", "kafka", "out"}, "--exactly-once needs --group"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--group", "g", "--exactly-once", "kafka", "--brokers", "127.0.0.2:1", "out"},
			"must be one cluster"},
	})
}

// A record larger than the output topic's max.message.bytes, with
// --exactly-once: the broker's refusal is final, as for the sink without
// transactions, so its batch (one transaction, whose offset covers it
// whole) is dead-lettered at once, not tried again for minutes while its
// partition stands still; the other partitions are copied.
func TestKafkaTxnSinkRecordTooLarge(t *testing.T) {
	k := newKafka(t, 4)
	out := k.name("copy")
	kafkatest.CreateTopic(t, k.addr, out, 4, "max.message.bytes", "10000")
	pr := newProducer(t, k.addr)
	pr.produce(k.topic, parts4, 50)
	big := "1/big/" + strings.Repeat("B", 20000)
	if _, _, err := pr.p.SendMessage(&sarama.ProducerMessage{Topic: k.topic, Partition: 1, Value: sarama.StringEncoder(big)}); err != nil {
		t.Fatal(err)
	}
	pr.produce(k.topic, parts4, 50)
	dl := filepath.Join(t.TempDir(), "dead")
	// One batch a partition; many records a transaction (-n), so that a
	// chunk the broker finds too large is not taken for one record that is.
	r := run(t, nil, "-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end",
		"-n", "1000", "--dead-letter", dl, "kafka", out)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3 (dead-lettered):\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "transaction again") || !strings.Contains(r.stderr, ", 0 retries") {
		t.Fatalf("the refused record was tried again:\n%s", r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(readFile(t, dl), "\n"), "\n")
	if len(lines) != 101 || lines[50] != big || lines[0] != value(1, 0) || lines[100] != value(1, 99) {
		t.Fatalf("dead letter of %d lines, want partition 1's 101 records, the large one among them", len(lines))
	}
	got := readCommitted(t, k.addr, out)
	if len(got) != 300 {
		t.Fatalf("read_committed sees %d records, want the 300 of partitions 0, 2 and 3", len(got))
	}
	for _, rec := range got {
		if p, _ := parseValue(t, string(rec.value)); p == 1 {
			t.Fatalf("a record of partition 1 was written: %.40q", rec.value)
		}
	}
	if off := committedOffsets(t, k.addr, k.topic, k.group, parts4); off[0] != 100 || off[2] != 100 || off[3] != 100 {
		t.Fatalf("committed offsets %v, want the end of partitions 0, 2 and 3", off)
	}
}
