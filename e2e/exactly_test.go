package e2e

// End-to-end tests of --exactly-once: batches cut where a run before cut
// them, whatever kills it, so files named by their offsets hold every
// record once.

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/batchpipe/batchpipe/kafka/kafkatest"
)

var exactlySeed = flag.Uint64("exactly-seed", 0, "seed of TestKafkaExactlyOnceKills's kill points and -n (0: a new one, logged)")

// TestKafkaExactlyOnceKills drains 200k records over 4 partitions with
// -j 4, killing batchpipe with SIGKILL 20 times at random points, each run
// with another -n, into files named by their offsets. In the end every
// record is in exactly one file, and each partition's files follow one
// another.
func TestKafkaExactlyOnceKills(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition = 50000
	s := *exactlySeed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d: -exactly-seed %d picks the same kill points", s, s)
	rng := rand.New(rand.NewPCG(s, 1))
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, perPartition)
	out := t.TempDir()
	tmpl := filepath.Join(out, "{partition}", "{first_offset}-{last_offset}")
	args := func(n int) []string {
		return []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end",
			"-n", strconv.Itoa(n), "-j", "4", "--commit-interval", "20ms", "--kafka-session-timeout", "1s",
			"file", "--per-batch", tmpl}
	}
	kills, reformed := 0, 0
	for kill := range 20 {
		n := 50 + rng.IntN(1500)
		p := start(t, args(n)...)
		k := 1 + rng.IntN(8)
		p.waitLine(fmt.Sprintf("%d batches delivered, or the end", k), func(string) bool {
			e := p.stderr()
			return strings.Count(e, "outcome=delivered") >= k || strings.Contains(e, "drained")
		})
		p.signal(syscall.SIGKILL)
		code := p.wait()
		if code == 0 {
			t.Logf("run %d finished before the kill", kill)
			break
		}
		kills++
		reformed += strings.Count(p.stderr(), "reason=planned")
	}
	r := run(t, nil, args(777)...)
	if r.code != 0 {
		t.Fatalf("final drain: exit %d:\n%s", r.code, r.stderr)
	}
	reformed += strings.Count(r.stderr, "reason=planned")
	files := checkOffsetFiles(t, offsetFiles(t, out), perPartition)
	if reformed == 0 {
		t.Fatalf("after %d kills no batch was re-formed: the kills missed every planned batch", kills)
	}
	t.Logf("%d kills, %d files, %d batches re-formed as planned", kills, files, reformed)
}

// Two members share the partitions; one is killed. The survivor takes its
// partitions over and forms the batches the dead one had cut again.
func TestKafkaExactlyOnceTwoMembers(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition = 20000
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, perPartition)
	out := t.TempDir()
	args := []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--exactly-once",
		"-n", "100", "-j", "4", "--commit-interval", "20ms", "--kafka-session-timeout", "1s",
		"file", "--per-batch", filepath.Join(out, "{partition}", "{first_offset}-{last_offset}")}
	p1 := start(t, args...)
	p1.waitFor("kafka: assigned")
	p2 := start(t, append(slices.Clone(args[:len(args)-3]), "-n", "333", "file", "--per-batch", args[len(args)-1])...)
	p1.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })
	p2.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })
	// Killed while delivering its share, not before it began: batches
	// delivered before the rebalance leave it no cut to re-form.
	p1.waitForLines("p1 delivering its two partitions", func(l []string) bool { return deliveredSinceAssigned(l) >= 5 })
	p1.signal(syscall.SIGKILL)
	p1.wait()
	p2.waitForLines("every partition committed to its end", func(lines []string) bool {
		done := map[string]bool{}
		for _, l := range lines {
			if strings.Contains(l, "kafka: committed") && strings.Contains(l, fmt.Sprintf("offset=%d", perPartition)) {
				part, _ := logValue(l, "partition")
				done[part] = true
			}
		}
		return len(done) == 4
	})
	p2.signal(syscall.SIGTERM)
	if code := p2.wait(); code != 143 {
		t.Fatalf("exit %d, want 143:\n%s", code, p2.stderr())
	}
	checkOffsetFiles(t, offsetFiles(t, out), perPartition)
	if !strings.Contains(p2.stderr(), "reason=planned") {
		t.Fatalf("the survivor re-formed none of the dead member's batches:\n%s", p2.stderr())
	}
}

func TestKafkaExactlyOnceUsage(t *testing.T) {
	checkUsage(t, []usageCase{
		{[]string{"--exactly-once", "file", "-"}, "stdin cannot be read again"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--exactly-once", "file", "-"}, "--exactly-once needs --group"},
	})
}

// An idempotent receiver keeps a batch by its Idempotency-Key and drops
// one it has seen. Across kill -9s a key must always come with the same
// body, and the bodies it kept hold every record once.
func TestKafkaExactlyOnceIdempotentHTTP(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition = 5000
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, perPartition)
	var mu sync.Mutex
	bodies := map[string]string{}
	again, mismatched := 0, []string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		defer mu.Unlock()
		if b, ok := bodies[key]; ok {
			again++
			if b != string(body) {
				mismatched = append(mismatched, key)
			}
			return // already kept: 200, as an idempotent API answers
		}
		bodies[key] = string(body)
	}))
	defer srv.Close()
	args := func(n int) []string {
		return []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end",
			"-n", strconv.Itoa(n), "-j", "4", "--commit-interval", "20ms", "--kafka-session-timeout", "1s",
			"http", "-H", "Idempotency-Key: {batch_id}", srv.URL + "/ingest"}
	}
	for kill := range 5 {
		p := start(t, args(40+kill*31)...)
		p.waitLine("batches delivered", func(string) bool { return strings.Count(p.stderr(), "outcome=delivered") >= 3+kill })
		p.signal(syscall.SIGKILL)
		p.wait()
	}
	if r := run(t, nil, args(500)...); r.code != 0 {
		t.Fatalf("final drain: exit %d:\n%s", r.code, r.stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(mismatched) > 0 {
		t.Fatalf("keys sent again with other bodies: %q", mismatched)
	}
	files := map[int32][]offsetFile{}
	for key, body := range bodies {
		f := strings.Split(strings.TrimPrefix(key, k.topic+"-"), "-") // TOPIC-PARTITION-FIRST-LAST
		if len(f) != 3 {
			t.Fatalf("key %q is not %s-PARTITION-FIRST-LAST", key, k.topic)
		}
		p, _ := strconv.Atoi(f[0])
		first, _ := strconv.ParseInt(f[1], 10, 64)
		last, _ := strconv.ParseInt(f[2], 10, 64)
		files[int32(p)] = append(files[int32(p)], offsetFile{first, last, strings.Split(strings.TrimSuffix(body, "\n"), "\n")})
	}
	checkOffsetFiles(t, files, perPartition)
	t.Logf("%d batches kept, %d sent again with the same body", len(bodies), again)
}

// A dead-lettered batch keeps its id: a header on each record in the
// dead-letter topic, and the warning line names it.
func TestKafkaExactlyOnceDeadLetterKeepsID(t *testing.T) {
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, 300)
	dlq := k.name("dlq")
	kafkatest.CreateTopic(t, addr, dlq, 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "1-100"), []byte("another batch's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end", "-n", "100", "-t", "0",
		"-j", "4", "--dead-letter", "kafka:"+dlq, "file", "--per-batch", filepath.Join(dir, "{partition}-{first_offset}"))
	id := k.topic + "-1-100-199"
	if r.code != 3 || !strings.Contains(r.stderr, "batch_id="+id) || !strings.Contains(r.stderr, "other bytes") {
		t.Fatalf("exit %d, want 3 and the batch id in the warning:\n%s", r.code, r.stderr)
	}
	dead := readTopic(t, addr, dlq)
	if len(dead) != 100 {
		t.Fatalf("%d records in dlq, want 100", len(dead))
	}
	for _, m := range dead {
		if h := headers(m); h["batchpipe-batch-id"] != id {
			t.Fatalf("dead letter %q: batchpipe-batch-id %q", m.Value, h["batchpipe-batch-id"])
		}
	}
}

// deliveredSinceAssigned counts the batches a member's -v lines say it
// delivered since its last assignment.
func deliveredSinceAssigned(lines []string) int {
	n := 0
	for _, l := range slices.Backward(lines) {
		if strings.Contains(l, "kafka: assigned") {
			break
		}
		if strings.Contains(l, "outcome=delivered") {
			n++
		}
	}
	return n
}
