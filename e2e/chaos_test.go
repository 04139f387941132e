package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// totalRead returns the records-read count of a -v "read" line, or -1.
func totalRead(line string) int {
	m := regexp.MustCompile(`msg=read .*total=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// summaryRead returns the records read according to the summary line.
func summaryRead(t *testing.T, stderr string) int {
	t.Helper()
	m := regexp.MustCompile(`batchpipe: (\d+) records .* read`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary in:\n%s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestSignalsAtRandomMomentsLoseNothing stops runs with SIGTERM or SIGINT
// at random points. Every record read must be in the output exactly once,
// and the exit status must say which signal stopped it.
func TestSignalsAtRandomMomentsLoseNothing(t *testing.T) {
	const lines = 200_000
	var in bytes.Buffer
	for i := range lines {
		fmt.Fprintf(&in, "%d\n", i)
	}
	input := strings.Split(strings.TrimSuffix(in.String(), "\n"), "\n")
	for round := range 8 {
		sig, code := syscall.SIGTERM, 143
		if round%2 == 1 {
			sig, code = syscall.SIGINT, 130
		}
		j := []string{"1", "4"}[round/2%2]
		t.Run(fmt.Sprintf("%d-%v-j%s", round, sig, j), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			p := start(t, "-v", "-n", "100", "-j", j, "-t", "5ms", "file", out)
			// Input stays open: the signal, not its end, stops the run.
			at := 1 + rand.IntN(lines-1)
			go p.stdin.Write([]byte(strings.Join(input[:at], "\n") + "\n"))
			p.waitLine(fmt.Sprintf("total>=%d", at), func(l string) bool { return totalRead(l) >= at })
			p.signal(sig)
			if got := p.wait(); got != code {
				t.Fatalf("exit %d, want %d: %s", got, code, p.stderr())
			}
			n := summaryRead(t, p.stderr())
			if n != at {
				t.Fatalf("%d records read, %d written", n, at)
			}
			got := strings.Split(strings.TrimSuffix(readFile(t, out), "\n"), "\n")
			if n == 0 {
				got = nil
			}
			slices.SortFunc(got, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
			if !slices.Equal(got, input[:n]) {
				t.Fatalf("%d records read, output holds %d (lost or duplicated records)", n, len(got))
			}
		})
	}
}

func init() {
	// chaos OUT SEED: by a hash of SEED, the batch and the attempt, fail
	// (20%), die by SIGKILL (10%) or hang until killed (10%); otherwise
	// append stdin to OUT in one write and succeed. It fails only before
	// writing, so a record in OUT was delivered exactly once.
	children["chaos"] = func(args []string) int {
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 1
		}
		h := fnv.New64a()
		fmt.Fprintf(h, "%s:%s:%s", args[1], os.Getenv("BATCHPIPE_SEQ"), os.Getenv("BATCHPIPE_ATTEMPT"))
		switch h.Sum64() % 10 {
		case 0, 1:
			return 1
		case 2:
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		case 3:
			<-make(chan struct{}) // killed by --timeout
		}
		return appendTo(args[0], in)
	}
}

// appendTo appends in to the file named, in one write, and returns a
// child's exit status.
func appendTo(name string, in []byte) int {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 1
	}
	if _, err := f.Write(in); err != nil {
		return 1
	}
	if f.Close() != nil {
		return 1
	}
	return 0
}

// TestChaosExecDeliveredPlusDeadLetteredIsInput runs commands that fail,
// crash and hang at random. Whatever the retries, every record is
// delivered exactly once or dead-lettered, and the exit status says which.
func TestChaosExecDeliveredPlusDeadLetteredIsInput(t *testing.T) {
	// The timeout must catch only the hanging runs (4s: a loaded machine
	// can take 2s to start a child): one that fired after
	// a slow child had written would be a duplicate, which at-least-once
	// allows but this test's exact count would not.
	input := numbered(600, "%d")
	for seed, retries := range []string{"0", "2"} {
		t.Run(fmt.Sprintf("retries=%s/seed=%d", retries, seed), func(t *testing.T) {
			dir := t.TempDir()
			out, dead := filepath.Join(dir, "out"), filepath.Join(dir, "dead")
			args := []string{"-n", "20", "-j", "4", "--retries", retries, "--backoff", "1ms", "--dead-letter", dead,
				"exec", "--timeout", "4s", "--kill-after", "50ms", "--"}
			args = append(append(args, childCmd(t, "chaos")...), out, fmt.Sprint(seed))
			r := run(t, strings.NewReader(input), args...)
			delivered, _ := os.ReadFile(out)
			deadLettered, _ := os.ReadFile(dead)
			if got := sortedLines(string(delivered) + string(deadLettered)); !slices.Equal(got, sortedLines(input)) {
				t.Fatalf("delivered ∪ dead-lettered is %d records, not the %d of the input", len(got), 600)
			}
			want := 0
			if len(deadLettered) > 0 {
				want = 3
			}
			if r.code != want {
				t.Fatalf("exit %d, want %d: %s", r.code, want, r.stderr)
			}
		})
	}
}

// TestChaosHTTPEveryRecordArrivesOrIsDeadLettered posts to a server that
// answers at random: 5xx, 429, 400, dropped connections, too slow. Every
// record arrives at least once or is in the dead letter.
func TestChaosHTTPEveryRecordArrivesOrIsDeadLettered(t *testing.T) {
	var n atomic.Int64
	answers := []int{200, 200, 200, 200, 500, 503, 429, 400, dropped, slow}
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		switch code := answers[rand.IntN(len(answers))]; code {
		case dropped:
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return 0
		case slow:
			<-r.Context().Done()
			return 0
		case 200:
			n.Add(1)
			return 200
		default:
			w.WriteHeader(code)
			return code
		}
	})
	input := numbered(2000, "r%d")
	dead := filepath.Join(t.TempDir(), "dead")
	r := run(t, strings.NewReader(input), "-n", "20", "-j", "4", "--retries", "2", "--backoff", "1ms",
		"--max-backoff", "5ms", "--dead-letter", dead, "http", "--timeout", "100ms", srv.URL)
	deadLettered, _ := os.ReadFile(dead)
	inDead := map[string]bool{}
	for _, l := range sortedLines(string(deadLettered)) {
		inDead[l+"\n"] = true
	}
	for _, m := range srv.missing(input) {
		if !inDead[m] {
			t.Fatalf("%q neither arrived nor was dead-lettered", m)
		}
	}
	if want := map[bool]int{true: 3, false: 0}[len(deadLettered) > 0]; r.code != want {
		t.Fatalf("exit %d, want %d: %s", r.code, want, r.stderr)
	}
	if n.Load() == 0 || len(deadLettered) == 0 {
		t.Fatalf("%d successes, %d bytes dead-lettered: the dice did not test both paths", n.Load(), len(deadLettered))
	}
}

// TestSignalDuringRetriesLosesNothing stops a run while batches are being
// retried and backing off: the drain finishes them, and every record read
// is delivered exactly once or dead-lettered.
func TestSignalDuringRetriesLosesNothing(t *testing.T) {
	dir := t.TempDir()
	out, dead := filepath.Join(dir, "out"), filepath.Join(dir, "dead")
	args := []string{"-v", "-n", "10", "-j", "2", "--retries", "3", "--backoff", "50ms", "--dead-letter", dead,
		"exec", "--timeout", "2s", "--kill-after", "50ms", "--"}
	args = append(append(args, childCmd(t, "chaos")...), out, "7")
	p := start(t, args...)
	input := numbered(200, "%d")
	go p.stdin.Write([]byte(input)) // input stays open
	p.waitFor("total=200")
	p.waitFor("retrying") // a batch is backing off now
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d: %s", code, p.stderr())
	}
	delivered, _ := os.ReadFile(out)
	deadLettered, _ := os.ReadFile(dead)
	if got := sortedLines(string(delivered) + string(deadLettered)); !slices.Equal(got, sortedLines(input)) {
		t.Fatalf("delivered ∪ dead-lettered is %d records, not 200", len(got))
	}
}

// crashSeed replays TestKafkaRepeatedCrashes's kill points.
var crashSeed = flag.Uint64("crash-seed", 0, "seed of TestKafkaRepeatedCrashes's kill points (0: a new one, logged)")

// TestKafkaRepeatedCrashes kills a group consumer with SIGKILL at random
// points, ten times in a row, restarting it each time. At every kill no
// committed offset may pass a record not yet delivered, and every restart
// must begin exactly at the committed offsets; in the end every record is
// delivered at least once. The records delivered twice are those delivered
// after the last commit a run made; TestKafkaCrashResume bounds them
// exactly, with a kill at a moment it controls.
func TestKafkaRepeatedCrashes(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition, n = 5000, 50
	s := *crashSeed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d: -crash-seed %d picks the same kill points", s, s)
	rng := rand.New(rand.NewPCG(s, 0))
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, perPartition)
	all := delivered{}
	from := map[int32]int64{}
	dir := t.TempDir()
	kills := 0
	for kill := range 10 {
		// A run can get far ahead of the log lines the test has read, so
		// the runs before may have left fewer than 30 batches: with -t 0
		// only full batches are delivered.
		left := int64(0)
		for _, part := range parts4 {
			left += perPartition - from[part]
		}
		if left < n {
			break
		}
		kills++
		out := filepath.Join(dir, fmt.Sprintf("out%d", kill))
		p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "-n", strconv.Itoa(n), "-j", "2",
			"-t", "0", "--commit-interval", "10ms", "--kafka-session-timeout", "1s", "file", out)
		batches := 1 + rng.IntN(int(min(30, left/n)))
		p.waitLine(fmt.Sprintf("%d batches delivered", batches), func(string) bool {
			return strings.Count(p.stderr(), "outcome=delivered") >= batches
		})
		p.signal(syscall.SIGKILL)
		p.wait()
		// SIGKILL can cut a write to a file short: the line it left
		// unfinished was not delivered.
		text := readFile(t, out)
		text = text[:strings.LastIndexByte(text, '\n')+1]
		got := delivered{}
		if text != "" {
			got.add(t, strings.Split(strings.TrimSuffix(text, "\n"), "\n")...)
		}
		for part, offs := range got {
			for off := range offs {
				if off < from[part] {
					t.Fatalf("kill %d: record %d/%d delivered again though committed before the restart (from %d)", kill, part, off, from[part])
				}
			}
		}
		for part, offs := range got {
			for off, c := range offs {
				if all[part] == nil {
					all[part] = map[int64]int{}
				}
				all[part][off] += c
			}
		}
		from = committedOffsets(t, addr, k.topic, k.group, parts4)
		for _, part := range parts4 {
			for off := range from[part] {
				if all[part][off] == 0 {
					t.Fatalf("kill %d: partition %d committed %d, but record %d was never delivered", kill, part, from[part], off)
				}
			}
		}
	}
	out := filepath.Join(dir, "last")
	r := run(t, nil, "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "500", "file", out)
	if r.code != 0 {
		t.Fatalf("final drain: exit %d:\n%s", r.code, r.stderr)
	}
	last := delivered{}
	last.add(t, fileLines(t, out)...)
	dups := 0
	for _, part := range parts4 {
		for off := range int64(perPartition) {
			c := all[part][off] + last[part][off]
			if c == 0 {
				t.Fatalf("record %d/%d never delivered", part, off)
			}
			if off < from[part] && last[part][off] > 0 {
				t.Fatalf("final drain re-delivered committed record %d/%d", part, off)
			}
			dups += c - 1
		}
	}
	t.Logf("%d kills: %d records delivered twice or more, of %d", kills, dups, 4*perPartition)
}

// TestKafkaBrokerRestartMidDrain stops the only broker in the middle of a
// group drain and starts it again from its data directory: at once, when
// the group session mostly outlives the restart, and once batchpipe has
// given the partitions up, when it must join again and read again from the
// offsets committed by then. Either way the drain completes: exit 0, every
// record delivered, the end committed, and each record delivered at most
// once per assignment that read it.
func TestKafkaBrokerRestartMidDrain(t *testing.T) {
	t.Parallel() // it waits on its own broker's restart and on session timeouts
	for _, tc := range []struct {
		name string
		wait string // what batchpipe says before the broker comes back
	}{
		{"at once", ""},
		{"after the session ended", "kafka: revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const perPartition = 2500
			k := ownKafka(t, 4)
			addr := k.addr
			newProducer(t, addr).produce(k.topic, parts4, perPartition)

			f := newFIFO(t)
			p := start(t, "-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end", "-n", "100",
				"--commit-interval", "20ms", "--kafka-session-timeout", "1s", "--kafka-rebalance-timeout", "2s", "--kafka-timeout", "30s", "file", f.path)
			first := f.read(3000) // the pipe holds the rest back: the drain is under way
			said := p.lineCount()
			k.stop()
			if tc.wait != "" {
				p.waitSince(said, tc.wait) // not a revoke of a session before
			}
			k.restart() // the same data, the same port
			lines := append(first, f.readWhile(p)...)
			t.Logf("batchpipe said:\n%s", grepLines(p.stderr(), "kafka", "WARN", "ERROR", "drained"))
			if p.code != 0 || !regexp.MustCompile(`(?m)^batchpipe: drained \d+ records from 1 topic, lag 0$`).MatchString(p.stderr()) {
				t.Fatalf("exit %d, want 0 and a drained line:\n%s", p.code, p.stderr())
			}
			got := delivered{}
			got.add(t, lines...)
			as := assignments(strings.Split(p.stderr(), "\n"))
			committed := committedOffsets(t, addr, k.topic, k.group, parts4)
			for _, part := range parts4 {
				if committed[part] != perPartition {
					t.Errorf("partition %d: committed %d, want the end, %d", part, committed[part], perPartition)
				}
				for off := range int64(perPartition) {
					read := 0 // assignments that read this record
					for _, a := range as {
						if a[part] <= off {
							read++
						}
					}
					if n := got[part][off]; n < 1 || n > read {
						t.Fatalf("record %d/%d delivered %d times, want 1 to %d: the %d assignments read it %d times",
							part, off, n, read, len(as), read)
					}
				}
			}
			t.Logf("%d assignments; %d records delivered, %d of them again", len(as), got.count(), got.count()-4*perPartition)
		})
	}
}

// grepLines returns the lines of s holding any of words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// assignments returns the start offset of each partition in every
// "kafka: assigned" line, in order.
func assignments(lines []string) []map[int32]int64 {
	var out []map[int32]int64
	re := regexp.MustCompile(`\[(\d+)\]:(\d+)-`)
	for _, l := range lines {
		if !strings.Contains(l, "kafka: assigned") {
			continue
		}
		starts := make(map[int32]int64)
		for _, m := range re.FindAllStringSubmatch(l, -1) {
			part, _ := strconv.Atoi(m[1])
			off, _ := strconv.ParseInt(m[2], 10, 64)
			starts[int32(part)] = off
		}
		out = append(out, starts)
	}
	return out
}
