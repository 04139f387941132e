package e2e

// End-to-end tests of the Kafka source: an in-process kfake cluster, the
// batchpipe binary reading from it. Record i of partition p of a test topic
// has offset i and the value "p/i/…", so a test can tell from a delivered
// line where it came from.
//
// A test that must hold batchpipe mid-run has it write to a FIFO that the
// test reads at its own pace: once the pipe is full, deliveries block, and
// nothing moves until the test reads on.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/internal/kafkareal"
	"github.com/batchpipe/batchpipe/internal/testcert"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafkaDrainUntilEnd drains a topic to its end and exits 0, alone and
// as a group; the group commits the end of every partition.
func TestKafkaDrainUntilEnd(t *testing.T) {
	for _, group := range []string{"", "g"} {
		t.Run("group="+group, func(t *testing.T) {
			k := newKafka(t, 4)
			addr := k.addr
			newProducer(t, addr).produce(k.topic, parts4, 25000)
			out := filepath.Join(t.TempDir(), "out")
			stats := filepath.Join(t.TempDir(), "stats.json")
			args := []string{"--kafka-brokers", addr, "--topic", k.topic, "--until-end", "-n", "1000", "-j", "4",
				"--stats-file", stats, "file", out}
			if group != "" {
				group = k.name(group)
				args = append([]string{"--group", group}, args...)
			}
			r := run(t, nil, args...)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			d := delivered{}
			d.add(t, fileLines(t, out)...)
			wantExactly(t, d, nil, each(parts4, 25000))
			if !strings.Contains(r.stderr, "drained 100000 records from 1 topic, lag 0") {
				t.Fatalf("no drained line:\n%s", r.stderr)
			}
			var report struct {
				Read int64            `json:"records_read"`
				Lag  map[string]int64 `json:"kafka_lag"`
			}
			if err := json.Unmarshal([]byte(readFile(t, stats)), &report); err != nil {
				t.Fatal(err)
			}
			if lag, ok := report.Lag[k.topic]; !ok || lag != 0 || report.Read != 100000 {
				t.Fatalf("stats file: %+v", report)
			}
			if group == "" {
				return
			}
			for p, o := range committedOffsets(t, addr, k.topic, group, parts4) {
				if o != 25000 {
					t.Errorf("partition %d: committed %d, want 25000", p, o)
				}
			}
		})
	}
}

func TestKafkaEmptyPartitions(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, []int32{0, 2}, 500)
	empty := k.name("empty")
	kafkatest.CreateTopic(t, addr, empty, 3)
	full := each([]int32{0, 2}, 500)
	for _, tc := range []struct {
		args []string
		want map[int32]int
	}{
		{[]string{"--topic", k.topic}, full},
		{[]string{"--topic", k.topic, "--group", k.name("g1")}, full},
		{[]string{"--topic", empty}, nil},
		{[]string{"--topic", empty, "--group", k.name("g2")}, nil},
		{[]string{"--topic", k.topic, "--topic", empty, "--group", k.name("g3")}, full},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"--kafka-brokers", addr, "--until-end"}, tc.args...)
			r := run(t, nil, append(args, "file", out)...)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			d := delivered{}
			d.add(t, fileLines(t, out)...)
			wantExactly(t, d, nil, tc.want)
			if !strings.Contains(r.stderr, fmt.Sprintf("drained %d records", d.count())) {
				t.Fatalf("no drained line:\n%s", r.stderr)
			}
		})
	}
}

// A topic produced to while it is drained: the records produced after the
// end offsets were captured are not read. Alone, each partition's end is
// captured and logged in turn: the records come once all four are; in a
// group, all are captured before the assignment.
func TestKafkaUntilEndStopsAtCapturedEnd(t *testing.T) {
	for _, mode := range []struct {
		name, ready string
		lines       int
		args        []string
	}{
		{"plain", "kafka: reading", len(parts4), nil},
		{"group", "kafka: assigned", 1, []string{"--group"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			k := newKafka(t, 4)
			addr := k.addr
			pr := newProducer(t, addr)
			pr.produce(k.topic, parts4, 5000)
			f := newFIFO(t)
			args := []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--until-end", "-n", "500"}
			if mode.args != nil {
				args = append(args, "--group", k.group)
			}
			p := start(t, append(args, "file", f.path)...)
			p.waitForLines(fmt.Sprintf("%d lines %q", mode.lines, mode.ready), func(lines []string) bool {
				return strings.Count(strings.Join(lines, "\n"), mode.ready) >= mode.lines
			})
			pr.produce(k.topic, parts4, 1000) // after the end offsets were captured
			lines := f.readWhile(p)
			if code := p.wait(); code != 0 {
				t.Fatalf("exit %d:\n%s", code, p.stderr())
			}
			d := delivered{}
			d.add(t, lines...)
			wantExactly(t, d, nil, each(parts4, 5000))
		})
	}
}

// Stopped by SIGTERM part-way, a group member delivers what it read and
// commits it; the next run starts exactly there.
func TestKafkaGroupResume(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 10000)
	f := newFIFO(t)
	p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", "500", "-j", "2", "file", f.path)
	p.waitFor("kafka: assigned")
	first := f.read(5000)
	p.signal(syscall.SIGTERM)
	rest := f.readWhile(p)
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d, want 143:\n%s", code, p.stderr())
	}
	d1 := delivered{}
	d1.add(t, append(first, rest...)...)
	committed := committedOffsets(t, addr, k.topic, k.group, parts4)
	for _, part := range parts4 {
		// Everything read was delivered and committed, nothing more.
		if n := int64(len(d1[part])); committed[part] != n {
			t.Fatalf("partition %d: committed %d, but %d records delivered", part, committed[part], n)
		}
	}
	wantExactly(t, d1, nil, countsFrom(committed))

	drainFrom(t, k, committed, 10000)
}

func countsFrom(c map[int32]int64) map[int32]int {
	m := make(map[int32]int)
	for p, n := range c {
		m[p] = int(n)
	}
	return m
}

// settled reports whether every batch logged as delivered is covered by the
// offsets logged as committed: nothing acked waits for a commit.
func settled(lines []string) bool {
	acked := deliveredRecords(lines)
	committed := make(map[string]int64)
	for _, l := range lines {
		switch {
		case strings.Contains(l, "kafka: committed"):
			part, _ := logValue(l, "partition")
			off, _ := logValue(l, "offset")
			v, _ := strconv.ParseInt(off, 10, 64)
			committed[part] = v
		}
	}
	var sum int64
	for _, v := range committed {
		sum += v
	}
	return acked > 0 && sum == acked
}

// kill -9 in the middle: after a restart every record is delivered at
// least once, no offset was ever committed past a record not delivered, and
// the only duplicates are the batch in flight and the batches delivered
// after the last commit the test saw. (With -j > 1, batches delivered out
// of order behind a slow one cannot be committed either, and would be
// delivered again too.)
func TestKafkaCrashResume(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 10000)
	f := newFIFO(t)
	const n = 200
	// -t 0: every batch is n records, in order, so the output says which
	// batches were delivered.
	p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", strconv.Itoa(n), "-j", "1", "-t", "0",
		"--commit-interval", "20ms", "--kafka-session-timeout", "1s", "file", f.path)
	first := f.read(3000)
	// Once the pipe is full, deliveries block; kill once the commits have
	// caught up with every delivery logged so far.
	seen := 0
	p.waitForLines("commits covering every delivered batch", func(lines []string) bool {
		seen = len(lines)
		return settled(lines)
	})
	p.signal(syscall.SIGKILL)
	p.wait()
	out1 := append(first, f.rest()...)
	d1 := delivered{}
	d1.add(t, out1...)
	committed := committedOffsets(t, addr, k.topic, k.group, parts4)

	// Never past delivery: below each committed offset, every record is in
	// a batch written whole.
	whole := delivered{}
	whole.add(t, out1[:len(out1)/n*n]...)
	for _, part := range parts4 {
		for i := range committed[part] {
			if whole[part][i] == 0 {
				t.Fatalf("partition %d: committed %d, but record %d was not delivered", part, committed[part], i)
			}
		}
	}

	d2 := drainFrom(t, k, committed, 10000)
	dups := 0
	for _, part := range parts4 {
		for i := range int64(10000) {
			total := d1[part][i] + d2[part][i]
			if total == 0 {
				t.Fatalf("record %d/%d never delivered", part, i)
			}
			if d1[part][i] > 1 {
				t.Fatalf("record %d/%d delivered twice before the crash", part, i)
			}
			dups += total - 1
		}
	}
	// Batches logged as delivered after the lines the test had seen when it
	// killed: delivered after the last commit it waited for.
	late := 0
	for _, l := range strings.Split(p.stderr(), "\n")[seen:] {
		if strings.Contains(l, "msg=batch ") && strings.Contains(l, "outcome=delivered") {
			late += n
		}
	}
	if dups > n+late {
		t.Fatalf("%d records delivered twice, more than the batch in flight and the %d delivered after the last commit", dups, late)
	}
	t.Logf("%d records delivered before the crash, %d after, %d twice (%d delivered late)", d1.count(), d2.count(), dups, late)
}

// Two members of one group split the partitions; when one is killed its
// partitions go to the other, and every record is delivered.
func TestKafkaGroupTwoMembers(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 10000)
	args := []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", "200",
		"--kafka-session-timeout", "1s", "--commit-interval", "50ms", "--kafka-rebalance-timeout", "2s", "file"}
	f1, f2 := newFIFO(t), newFIFO(t)
	p1 := start(t, append(args, f1.path)...)
	p1.waitFor("kafka: assigned")
	p2 := start(t, append(args, f2.path)...)
	// The pipes are not read yet, so neither can get far meanwhile.
	p1.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })
	p2.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })

	p1.signal(syscall.SIGKILL)
	p1.wait()
	d := delivered{}
	d.add(t, f1.rest()...)
	// Reading lets p2 go on, with all four partitions once the group gives
	// up on p1.
	for !d.covers(parts4, 10000) {
		d.add(t, f2.read(1)...)
	}
	p2.waitForLines("the partitions of the killed member", func(l []string) bool { return assignedCount(l) == 4 })
	p2.signal(syscall.SIGTERM)
	d.add(t, f2.readWhile(p2)...)
	if code := p2.wait(); code != 143 {
		t.Fatalf("exit %d, want 143:\n%s", code, p2.stderr())
	}
	t.Logf("%d records delivered, %d of them twice", d.count(), d.count()-40000)
}

func TestKafkaUsage(t *testing.T) {
	checkUsage(t, []usageCase{
		{[]string{"--until-end", "file", "-"}, "--until-end reads Kafka: give --topic too"},
		{[]string{"--group", "g", "file", "-"}, "--group reads Kafka: give --topic too"},
		{[]string{"--topic", "t", "file", "-"}, "Kafka needs brokers"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--group", "g", "--partitions", "0", "file", "-"}, "--partitions and --group"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--from", "yesterday", "file", "-"}, "--from"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--envelope", "xml", "file", "-"}, "--envelope takes json"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--kafka-sasl", "plain", "--kafka-user", "u", "file", "-"}, "BATCHPIPE_KAFKA_PASSWORD"},
	})
}

// batchFiles reads the files of a --per-batch run.
func batchFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range entries {
		if e.Name() == "5" {
			continue // the obstacle
		}
		lines = append(lines, fileLines(t, filepath.Join(dir, e.Name()))...)
	}
	return lines
}

// A batch that fails for good with no dead letter stops the run, and no
// offset is committed past a record that was not delivered.
func TestKafkaFailedBatchBlocksCommits(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 2500)
	dir := t.TempDir()
	// Batch 5 cannot be written: its file exists.
	if err := os.WriteFile(filepath.Join(dir, "5"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "300", "-j", "4",
		"file", "--per-batch", filepath.Join(dir, "{seq}"))
	if r.code != 1 || !strings.Contains(r.stderr, "batch 5") {
		t.Fatalf("exit %d, want 1 naming batch 5:\n%s", r.code, r.stderr)
	}
	d := delivered{}
	d.add(t, batchFiles(t, dir)...)
	committed := committedOffsets(t, addr, k.topic, k.group, parts4)
	some := false
	for _, p := range parts4 {
		firstMissing := int64(0)
		for d[p][firstMissing] > 0 {
			firstMissing++
		}
		if committed[p] > firstMissing {
			t.Errorf("partition %d: committed %d, past record %d which was not delivered", p, committed[p], firstMissing)
		}
		some = some || committed[p] > 0
	}
	if !some {
		t.Errorf("nothing committed, though batches 1-4 were delivered:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "lag ") {
		t.Errorf("no lag in the summary:\n%s", r.stderr)
	}
}

// With --dead-letter kafka:dlq the failed batch goes to the dlq topic, with
// its keys and headers and the batchpipe ones, and the run completes.
func TestKafkaDeadLetterTopic(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 2500)
	dlq := k.name("dlq")
	kafkatest.CreateTopic(t, addr, dlq, 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "5"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "300", "-j", "4",
		"--dead-letter", "kafka:"+dlq, "file", "--per-batch", filepath.Join(dir, "{seq}"))
	if r.code != 3 || !strings.Contains(r.stderr, "300 records dead-lettered to kafka:"+dlq) {
		t.Fatalf("exit %d, want 3:\n%s", r.code, r.stderr)
	}
	d := delivered{}
	d.add(t, batchFiles(t, dir)...)

	dead := readTopic(t, addr, dlq)
	if len(dead) != 300 {
		t.Fatalf("%d records in dlq, want 300", len(dead))
	}
	for _, m := range dead {
		p, i := parseValue(t, string(m.Value))
		if d[p][i] != 0 {
			t.Fatalf("record %d/%d both delivered and dead-lettered", p, i)
		}
		d.add(t, string(m.Value))
		h := headers(m)
		want := map[string]string{
			"h":                          "v" + strconv.FormatInt(i, 10),
			"batchpipe-source-topic":     k.topic,
			"batchpipe-source-partition": strconv.Itoa(int(p)),
			"batchpipe-source-offset":    strconv.FormatInt(i, 10),
			"batchpipe-attempts":         "1",
		}
		for k, v := range want {
			if h[k] != v {
				t.Fatalf("record %d/%d: header %s=%q, want %q", p, i, k, h[k], v)
			}
		}
		if !strings.Contains(h["batchpipe-error"], "not overwriting") {
			t.Fatalf("record %d/%d: batchpipe-error %q", p, i, h["batchpipe-error"])
		}
		if string(m.Key) != "k"+strconv.FormatInt(i, 10) {
			t.Fatalf("record %d/%d: key %q", p, i, m.Key)
		}
	}
	wantExactly(t, d, nil, each(parts4, 2500))
	for p, o := range committedOffsets(t, addr, k.topic, k.group, parts4) {
		if o != 2500 {
			t.Errorf("partition %d: committed %d, want 2500: dead letters count as handled", p, o)
		}
	}
}

// Brokers gone mid-run for longer than --kafka-timeout: exit 1, saying so
// and how much was left unread.
func TestKafkaBrokerLost(t *testing.T) {
	k := ownKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 50000)
	f := newFIFO(t)
	p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", "500", "--kafka-timeout", "1s",
		"file", f.path)
	p.waitFor("kafka: assigned")
	lines := f.read(1000)
	k.stop()
	lines = append(lines, f.readWhile(p)...)
	if code := p.wait(); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, p.stderr())
	}
	// Named by Kafka's terms, not by a byte offset into the records.
	if !strings.Contains(p.stderr(), "batchpipe: read: kafka: no broker answered for") {
		t.Fatalf("no word of the brokers in stderr:\n%s", p.stderr())
	}
	summary := p.waitFor("records read from 1 topic, lag ")
	lag, _ := strconv.Atoi(summary[strings.LastIndex(summary, " ")+1:])
	d := delivered{}
	d.add(t, lines...)
	if d.count() == 0 || lag == 0 || d.count()+lag != 200000 {
		t.Fatalf("%d records delivered and a lag of %d, want a lag of the rest of 200000:\n%s", d.count(), lag, p.stderr())
	}
}

// SASL with the password from the environment, brokers too; a wrong
// password is a usage error that does not repeat it. On the real broker:
// PLAIN and SCRAM-SHA-256 on its SASL_PLAINTEXT listener.
func TestKafkaSASL(t *testing.T) {
	k, logins := saslKafka(t, "scram-sha-512", "loader", "s3cret-pass")
	n := 0 // kfake with SASL takes no records from the test's producer
	if realKafka != nil {
		n = 10
		newProducer(t, k.addr).produce(k.topic, []int32{0}, n)
	}
	for _, l := range logins {
		t.Run(l.mechanism, func(t *testing.T) {
			t.Setenv("BATCHPIPE_KAFKA_BROKERS", l.addr)
			t.Setenv("BATCHPIPE_KAFKA_PASSWORD", "not-the-pass")
			args := []string{"--topic", k.topic, "--until-end", "--kafka-sasl", l.mechanism, "--kafka-user", l.user, "file", "-"}
			r := run(t, nil, args...)
			// kfake hangs up without a word, and batchpipe says what that
			// may mean; Kafka says it.
			said := strings.Contains(r.stderr, "SASL user and password") || strings.Contains(r.stderr, "SASL Authentication failed")
			if r.code != 2 || strings.Contains(r.stderr, "not-the-pass") || !said {
				t.Fatalf("wrong password: exit %d, stderr:\n%s", r.code, r.stderr)
			}
			t.Setenv("BATCHPIPE_KAFKA_PASSWORD", l.pass)
			r = run(t, nil, args...)
			if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("drained %d records", n)) {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			d := delivered{}
			if n > 0 {
				d.add(t, strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")...)
			}
			wantExactly(t, d, nil, each([]int32{0}, n))
		})
	}
}

// TLS with the CA from --kafka-cacert: on kfake, and on the real broker's
// SSL listener.
func TestKafkaTLS(t *testing.T) {
	var k *kafkaEnv
	var addr, ca string
	if realKafka == nil {
		certs := testcert.New(t)
		k = newFakeKafka(t, 2, kfake.TLS(certs.ServerConfig(false)))
		addr, ca = k.addr, certs.CAFile
	} else {
		k = newKafka(t, 2)
		addr, ca = realKafka[kafkareal.EnvSSL], realKafka[kafkareal.EnvCA]
	}
	args := []string{"--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "file", "-"}
	if r := run(t, nil, args...); r.code != 2 || !strings.Contains(r.stderr, addr) {
		t.Fatalf("without the CA: exit %d, want 2 naming the broker:\n%s", r.code, r.stderr)
	}
	args = append([]string{"--kafka-cacert", ca}, args...)
	r := run(t, nil, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "drained 0 records") {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
}

// --envelope json: each record one JSON object with its metadata; a file
// dead letter keeps the envelopes.
func TestKafkaEnvelope(t *testing.T) {
	k := newKafka(t, 2)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, []int32{0, 1}, 500)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dl := filepath.Join(t.TempDir(), "dead")
	r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--until-end", "--envelope", "json", "-n", "100",
		"--dead-letter", dl, "file", "--per-batch", filepath.Join(dir, "{seq}"))
	if r.code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", r.code, r.stderr)
	}
	type envelope struct {
		Topic     string
		Partition int32
		Offset    int64
		Timestamp time.Time
		Key       string
		Headers   []struct{ Key, Value string }
		Value     string
	}
	seen := 0
	for _, file := range []string{dl, ""} {
		var lines []string
		if file == "" {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				lines = append(lines, fileLines(t, filepath.Join(dir, e.Name()))...)
			}
		} else {
			lines = fileLines(t, file)
			if len(lines) != 100 {
				t.Fatalf("%d dead letters, want the 100 of batch 2", len(lines))
			}
		}
		for _, l := range lines {
			var e envelope
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			p, i := parseValue(t, e.Value)
			if e.Topic != k.topic || e.Partition != p || e.Offset != i || e.Key != "k"+strconv.FormatInt(i, 10) ||
				len(e.Headers) != 1 || e.Headers[0].Value != "v"+strconv.FormatInt(i, 10) || time.Since(e.Timestamp) > time.Hour {
				t.Fatalf("envelope %s does not match its record", l)
			}
			seen++
		}
	}
	if seen != 1000 {
		t.Fatalf("%d envelopes, want 1000", seen)
	}
}

// Records from stdin can be dead-lettered to Kafka too: with the reason
// headers only.
func TestKafkaDeadLetterFromStdin(t *testing.T) {
	k := newKafka(t, 1)
	addr := k.addr
	dlq := k.name("dlq")
	kafkatest.CreateTopic(t, addr, dlq, 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, strings.NewReader("a\nb\nc\nd\ne\n"), "--kafka-brokers", addr, "--dead-letter", "kafka:"+dlq, "-n", "2",
		"file", "--per-batch", filepath.Join(dir, "{seq}"))
	if r.code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", r.code, r.stderr)
	}
	dead := readTopic(t, addr, dlq)
	if len(dead) != 2 || string(dead[0].Value) != "c" || string(dead[1].Value) != "d" {
		t.Fatalf("dead letters %v, want c and d", dead)
	}
	if h := headers(dead[0]); h["batchpipe-attempts"] != "1" || !strings.Contains(h["batchpipe-error"], "not overwriting") {
		t.Fatalf("headers %v", h)
	}
}

// A broker that takes connections and never answers: exit 2 within
// seconds, naming it.
func TestKafkaSilentBrokerAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	r := run(t, nil, "--kafka-brokers", ln.Addr().String(), "--topic", "t", "--kafka-timeout", "1s", "file", "-")
	if r.code != 69 || !strings.Contains(r.stderr, "connect to "+ln.Addr().String()) {
		t.Fatalf("exit %d, want 69 (EX_UNAVAILABLE):\n%s", r.code, r.stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
	t.Log(r.stderr)
}

// A topic written in transactions ends with commit markers, which sarama
// never delivers: the drain still ends, exit 0, with every offset up to the
// end committed.
func TestKafkaUntilEndTransactional(t *testing.T) {
	for _, group := range []string{"", "g"} {
		t.Run("group="+group, func(t *testing.T) {
			k := newKafka(t, 4)
			addr := k.addr
			pr := newProducer(t, addr)
			pr.produceTxn(addr, k.topic, k.name("txn"), parts4, 1000) // offsets 0-999, a marker at 1000
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"--kafka-brokers", addr, "--topic", k.topic, "--until-end", "-n", "300", "file", out}
			if group != "" {
				group = k.name(group)
				args = append([]string{"--group", group}, args...)
			}
			r := run(t, nil, args...)
			if r.code != 0 || !strings.Contains(r.stderr, "drained 4000 records from 1 topic, lag 0") {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			d := delivered{}
			d.add(t, fileLines(t, out)...)
			wantExactly(t, d, nil, each(parts4, 1000))
			if group == "" {
				return
			}
			for p, o := range committedOffsets(t, addr, k.topic, group, parts4) {
				if o != 1001 {
					t.Errorf("partition %d: committed %d, want 1001, past the marker", p, o)
				}
			}
		})
	}
}

// A member joins while a group drain delivers its last batch: the
// partitions the drain gets back in the rebalance start again from their
// committed offsets, below the end, with nothing left to read them. The
// run must fail, naming them, rather than exit 0 as drained; the ones the
// new member took are for it to finish.
func TestKafkaUntilEndRebalanceAtTheEnd(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 2500)
	f := newFIFO(t)
	// One batch of everything, flushed only once the drain is read; its
	// write fills the pipe and waits there for the test.
	p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "100000", "-b", "64M",
		"-t", "0", "--kafka-session-timeout", "1s", "--kafka-rebalance-timeout", "2s", "file", f.path)
	f.read(1)
	taken := joinGroup(t, k)
	assigned := func(lines []string) []string {
		var as []string
		for _, l := range lines {
			if strings.Contains(l, "kafka: assigned") {
				as = append(as, l)
			}
		}
		return as
	}
	p.waitForLines("the assignment after the rebalance", func(lines []string) bool { return len(assigned(lines)) >= 2 })
	f.readWhile(p)
	if code := p.wait(); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, p.stderr())
	}
	as := assigned(strings.Split(p.stderr(), "\n"))
	last := as[len(as)-1]
	for _, part := range parts4 {
		named := strings.Contains(p.stderr(), fmt.Sprintf("%s[%d] at 0 of 2500", k.topic, part))
		if ours := strings.Contains(last, fmt.Sprintf("%s[%d]:", k.topic, part)); named != ours {
			t.Errorf("partition %d: named %v in the error, but held at the end %v (the other member took %v):\n%s",
				part, named, ours, taken, p.stderr())
		}
	}
	t.Log(grepLines(p.stderr(), "committed short"))
}

// deliveredRecords sums the records of the batches logged as delivered.
func deliveredRecords(lines []string) int64 {
	var n int64
	for _, l := range lines {
		if strings.Contains(l, "msg=batch ") && strings.Contains(l, "outcome=delivered") {
			v, _ := logValue(l, "records")
			r, _ := strconv.ParseInt(v, 10, 64)
			n += r
		}
	}
	return n
}

// freezeCommits makes the cluster take offset commits and never answer
// them, as a broker that froze would; nor anything else on the connection
// that sent one, since a broker answers a connection's requests in order.
// frozen closes at the first commit taken; thaw lets later ones through.
func freezeCommits(c *kfake.Cluster) (frozen <-chan struct{}, thaw func()) {
	ch := make(chan struct{})
	var once sync.Once
	var thawed atomic.Bool
	c.ControlKey(kmsg.OffsetCommit.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		if thawed.Load() {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		once.Do(func() { close(ch) })
		return nil, nil, true // handled, with no answer
	})
	return ch, func() { thawed.Store(true) }
}

// A broker that stops answering at the final commit holds the exit no
// longer than what is left of --shutdown-timeout after a signal, even one
// that comes only during the commit, or than --kafka-timeout without one.
// The run exits 1 saying the commit may not have happened, and the next
// run reads those records again.
func TestKafkaFrozenFinalCommit(t *testing.T) {
	const before, during = 1, 2 // when SIGTERM comes, if at all
	for _, tc := range []struct {
		name   string
		args   []string
		signal int
		cause  string
	}{
		{"signal", []string{"--shutdown-timeout", "1s", "--kafka-timeout", "1m"}, before, "--shutdown-timeout 1s"},
		{"signal during the commit", []string{"--until-end", "--shutdown-timeout", "1s", "--kafka-timeout", "1m"}, during, "--shutdown-timeout 1s"},
		{"until-end", []string{"--until-end", "--kafka-timeout", "1s"}, 0, "--kafka-timeout (1s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := fakeKafka(t, "it swallows offset commits", 4)
			c, addr := k.fake, k.addr
			newProducer(t, addr).produce(k.topic, parts4, 2500)
			out := filepath.Join(t.TempDir(), "out")
			// No commit before the final one.
			args := append([]string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", "500",
				"--commit-interval", "1h", "--kafka-session-timeout", "1s"}, tc.args...)
			p := start(t, append(args, "file", out)...)
			frozen, thaw := freezeCommits(c)
			var from time.Time // the bound, 1s, counts from here
			if tc.signal == before {
				p.waitForLines("all 10000 records delivered", func(lines []string) bool {
					return deliveredRecords(lines) == 10000
				})
				from = time.Now()
				p.signal(syscall.SIGTERM)
			}
			p.waitClosed("the final commit", frozen)
			switch tc.signal {
			case 0:
				from = time.Now()
			case during:
				from = time.Now()
				p.signal(syscall.SIGTERM)
				p.waitFor("terminated: committing the offsets of what was delivered (terminated again to abandon it)")
			}
			code := p.wait()
			took := time.Since(from)
			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, p.stderr())
			}
			if took > 11*time.Second || tc.signal != 0 && took < time.Second {
				t.Fatalf("exited %v after the signal or the commit, want 1s and little more:\n%s", took, p.stderr())
			}
			want := "final commit abandoned: "
			if !strings.Contains(p.stderr(), want) || !strings.Contains(p.stderr(), tc.cause) ||
				!strings.Contains(p.stderr(), "the offsets of delivered records may not be committed, and those records will be read again") {
				t.Fatalf("no word of the abandoned commit and %s:\n%s", tc.cause, p.stderr())
			}
			d := delivered{}
			d.add(t, fileLines(t, out)...)
			wantExactly(t, d, nil, each(parts4, 2500))
			thaw()
			committed := committedOffsets(t, addr, k.topic, k.group, parts4)
			for _, part := range parts4 {
				if committed[part] != 0 {
					t.Fatalf("partition %d: committed %d, though every commit was swallowed", part, committed[part])
				}
			}
			drainFrom(t, k, committed, 2500)
		})
	}
}

// A second signal while the final commit waits for a broker that stopped
// answering ends the run at once: exit 1, saying the commit was abandoned.
func TestKafkaSecondSignalAbandonsFinalCommit(t *testing.T) {
	k := fakeKafka(t, "it swallows offset commits", 4)
	c, addr := k.fake, k.addr
	newProducer(t, addr).produce(k.topic, parts4, 2500)
	out := filepath.Join(t.TempDir(), "out")
	p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", "500", "--commit-interval", "1h",
		"--shutdown-timeout", "0", "--kafka-timeout", "1m", "file", out)
	frozen, _ := freezeCommits(c)
	p.waitFor("outcome=delivered") // something for the final commit
	p.signal(syscall.SIGTERM)
	p.waitClosed("the final commit", frozen)
	at := time.Now()
	p.signal(syscall.SIGTERM)
	code := p.wait()
	if took := time.Since(at); took > 10*time.Second {
		t.Fatalf("exited %v after the second signal:\n%s", took, p.stderr())
	}
	if code != 1 || !strings.Contains(p.stderr(), "final commit abandoned: second signal (terminated);") {
		t.Fatalf("exit %d, want 1 and word of the abandoned commit:\n%s", code, p.stderr())
	}
}

// A join the group refuses for good, before anything was read, is a usage
// error: exit 2 at once, naming the fix, instead of retrying forever.
func TestKafkaGroupRefusedAtStart(t *testing.T) {
	// Below the broker's minimum session timeout: kfake's is Kafka's
	// default, 6s; kafka-real's 100ms.
	var k *kafkaEnv
	timeout := "1s"
	if realKafka == nil {
		k = newFakeKafka(t, 1, kfake.GroupMinSessionTimeout(6*time.Second))
	} else {
		k, timeout = newKafka(t, 1), "50ms"
	}
	r := run(t, nil, "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--kafka-session-timeout", timeout, "file", "-")
	if r.code != 2 || !strings.Contains(r.stderr, "set --kafka-session-timeout (now "+timeout+") between") {
		t.Fatalf("exit %d, want 2 and the fix:\n%s", r.code, r.stderr)
	}
}

// TLS or SASL spoken to a listener without, or the reverse, or a SASL
// mechanism the listener does not offer: each is named, with the flags
// that mend it, and exit 2. On kfake, whose listener without SASL answers
// a SASL handshake as one with, and which offers every mechanism, three of
// the five can be played; the real broker plays all five.
func TestKafkaListenerMismatch(t *testing.T) {
	type mismatch struct {
		name, addr string
		args       []string
		want       string
	}
	var cases []mismatch
	if realKafka == nil {
		certs := testcert.New(t)
		tlsK := newFakeKafka(t, 1, kfake.TLS(certs.ServerConfig(false)))
		plainK := newFakeKafka(t, 1)
		saslK := newFakeKafka(t, 1, kfake.EnableSASL(), kfake.Superuser("PLAIN", "u", "p"))
		cases = []mismatch{
			{"tls listener", tlsK.addr, nil, "the listener speaks TLS, and the client does not: give --kafka-tls"},
			{"plaintext listener", plainK.addr, []string{"--kafka-tls"}, "the client speaks TLS, and the listener does not: leave out --kafka-tls"},
			{"sasl listener", saslK.addr, nil, "the listener wants SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), and the client has none: give --kafka-sasl MECHANISM"},
		}
	} else {
		plain, sasl, ssl := realKafka[kafkareal.EnvPlaintext], realKafka[kafkareal.EnvSASL], realKafka[kafkareal.EnvSSL]
		cases = []mismatch{
			{"tls listener", ssl, nil, "the listener speaks TLS, and the client does not: give --kafka-tls"},
			{"plaintext listener", plain, []string{"--kafka-tls"}, "the client speaks TLS, and the listener does not: leave out --kafka-tls"},
			{"sasl listener", sasl, nil, "the listener wants SASL (PLAIN, SCRAM-SHA-256), and the client has none: give --kafka-sasl MECHANISM"},
			{"plaintext listener, sasl", plain, []string{"--kafka-sasl", "plain", "--kafka-user", "u"}, "the client speaks SASL, and the listener takes none: leave out --kafka-sasl"},
			{"mechanism missing", sasl, []string{"--kafka-sasl", "scram-sha-512", "--kafka-user", "u"}, "the listener does not offer SASL mechanism SCRAM-SHA-512 (it offers PLAIN, SCRAM-SHA-256): give --kafka-sasl plain or scram-sha-256"},
		}
	}
	t.Setenv("BATCHPIPE_KAFKA_PASSWORD", "p")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sinks := [][]string{{"file", os.DevNull}}
			if tc.name == "tls listener" { // the producer connects the same way
				sinks = append(sinks, []string{"kafka", "out"})
			}
			for _, sink := range sinks {
				args := append([]string{"--kafka-brokers", tc.addr}, tc.args...)
				if sink[0] == "file" {
					args = append(args, "--topic", "t", "--until-end")
				}
				r := run(t, strings.NewReader(""), append(args, sink...)...)
				want := "kafka: connect to " + tc.addr + ": " + tc.want
				if r.code != 2 || !strings.Contains(r.stderr, want) {
					t.Errorf("%s: exit %d, want 2 and %q; stderr:\n%s", sink[0], r.code, want, r.stderr)
				}
			}
		})
	}
}
