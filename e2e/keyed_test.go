package e2e

// End-to-end tests of --partition-by: one open batch per key.

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// keyedInput is n records "kK\tI" over keys keys, interleaved.
func keyedInput(keys, n int) (string, map[string][]string) {
	var b strings.Builder
	byKey := map[string][]string{}
	for i := range n {
		k := fmt.Sprintf("k%d", i*7%keys) // not round robin: runs of a key
		if i%5 == 0 {
			k = "k0"
		}
		line := fmt.Sprintf("%s\t%d", k, i)
		b.WriteString(line + "\n")
		byKey[k] = append(byKey[k], line)
	}
	return b.String(), byKey
}

// keyFiles reads out/KEY/SEQ files: each key's batches, in batch order.
func keyFiles(t *testing.T, out string) map[string][][]string {
	t.Helper()
	got := map[string][][]string{}
	keys, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		entries, _ := os.ReadDir(filepath.Join(out, k.Name()))
		var seqs []int
		for _, e := range entries {
			s, err := strconv.Atoi(e.Name())
			if err != nil {
				t.Fatalf("%s/%s is not a batch number", k.Name(), e.Name())
			}
			seqs = append(seqs, s)
		}
		slices.Sort(seqs)
		for _, s := range seqs {
			got[k.Name()] = append(got[k.Name()], fileLines(t, filepath.Join(out, k.Name(), strconv.Itoa(s))))
		}
	}
	return got
}

func TestPartitionByKeys(t *testing.T) {
	in, byKey := keyedInput(5, 203)
	for _, tc := range []struct {
		name string
		args []string
		full bool // every batch of a key but its last holds -n records
	}{
		{"five keys", nil, true},
		{"two open keys", []string{"--max-open-keys", "2"}, false},
		{"tiny buffer", []string{"--max-buffered-bytes", "40"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"--partition-by", "{field:1}", "-n", "4", "-t", "0", "-j", "3"}, tc.args...)
			r := run(t, strings.NewReader(in), append(args, "file", "--per-batch", filepath.Join(out, "{key}", "{seq}"))...)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			got := keyFiles(t, out)
			if len(got) != len(byKey) {
				t.Fatalf("keys %v, want %d", slices.Collect(mapKeys(got)), len(byKey))
			}
			for k, want := range byKey {
				var all []string
				for i, b := range got[k] {
					if len(b) > 4 || tc.full && i < len(got[k])-1 && len(b) != 4 {
						t.Fatalf("key %s: batch %d holds %d records", k, i, len(b))
					}
					all = append(all, b...)
				}
				if !slices.Equal(all, want) {
					t.Fatalf("key %s: got %q, want %q", k, all, want)
				}
			}
			if !strings.Contains(r.stderr, "203 delivered") {
				t.Fatalf("summary: %s", r.stderr)
			}
		})
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Keys from the input cannot climb out of the template's directory, and a
// record without its field is dead-lettered alone.
func TestPartitionByPathSafeKeys(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	dl := filepath.Join(t.TempDir(), "dead")
	in := `{"k":"../x","n":1}
{"k":"/etc/passwd","n":2}
{"k":"","n":3}
{"k":"..","n":4}
{"n":5}
not json
{"k":"ok","n":6}
`
	r := run(t, strings.NewReader(in), "--partition-by", "{json:k}", "--dead-letter", dl,
		"file", "--per-batch", filepath.Join(out, "{key}", "batch-{seq}"))
	if r.code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", r.code, r.stderr)
	}
	var names []string
	filepath.WalkDir(filepath.Dir(out), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, p)
			names = append(names, rel)
		}
		return nil
	})
	slices.Sort(names)
	// The walk starts above out: a key that climbed out would show as ../….
	want := []string{"%/batch-3", "%2E%2E/batch-4", "%2Fetc%2Fpasswd/batch-2", "..%2Fx/batch-1", "ok/batch-5"}
	if !slices.Equal(names, want) {
		t.Fatalf("files %q, want %q", names, want)
	}
	if got := readFile(t, dl); got != "{\"n\":5}\nnot json\n" {
		t.Fatalf("dead letter %q", got)
	}
	if !strings.Contains(r.stderr, `no field \"k\"`) && !strings.Contains(r.stderr, `no field "k"`) {
		t.Fatalf("the reason is not logged:\n%s", r.stderr)
	}
}

func TestPartitionByUsage(t *testing.T) {
	checkUsage(t, []usageCase{
		{[]string{"--partition-by", "{nope}", "file", "-"}, "unknown placeholder {nope}"},
		{[]string{"--partition-by", "{kafka_key}", "file", "-"}, "give --topic too"},
		{[]string{"--max-open-keys", "3", "file", "-"}, "--max-open-keys is for --partition-by"},
		{[]string{"--partition-by", "{field:1}", "--max-open-keys", "0", "file", "-"}, "--max-open-keys must be at least 1"},
		{[]string{"--partition-by", "{field:1}", "--field-delimiter", "ab", "file", "-"}, "single byte"},
		{[]string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--group", "g", "--exactly-once", "--partition-by", "{kafka_key}", "file", "-"}, "--partition-by and --exactly-once"},
		{[]string{"file", "--per-batch", "out/{batchid}"}, "unknown placeholder {batchid}"},
	})
}

// A group drain with --partition-by by Kafka key (the same keys in every
// partition, so a partition's records sit in many key batches, more keys
// than may be open) through kill -9s: nothing lost, and no commit passes a
// record not delivered.
func TestKafkaPartitionByKills(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition = 5000
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, perPartition)
	dir := t.TempDir()
	all := delivered{}
	args := func(out string) []string {
		return []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--until-end",
			"--partition-by", "{kafka_key}", "--max-open-keys", "50", "-n", "3", "-t", "50ms", "-j", "4",
			"--commit-interval", "10ms", "--kafka-session-timeout", "1s", "file", out}
	}
	for kill := range 4 {
		out := filepath.Join(dir, fmt.Sprintf("out%d", kill))
		p := start(t, args(out)...)
		p.waitLine("batches delivered", func(string) bool { return strings.Count(p.stderr(), "outcome=delivered") >= 50*(kill+1) })
		p.signal(syscall.SIGKILL)
		p.wait()
		text := readFile(t, out)
		text = text[:strings.LastIndexByte(text, '\n')+1] // a kill may cut the last line
		if text != "" {
			all.add(t, strings.Split(strings.TrimSuffix(text, "\n"), "\n")...)
		}
		for part, c := range committedOffsets(t, addr, k.topic, k.group, parts4) {
			for off := range c {
				if all[part][off] == 0 {
					t.Fatalf("kill %d: partition %d committed at %d, but record %d was not delivered", kill, part, c, off)
				}
			}
		}
	}
	out := filepath.Join(dir, "last")
	if r := run(t, nil, args(out)...); r.code != 0 {
		t.Fatalf("final drain: exit %d:\n%s", r.code, r.stderr)
	}
	all.add(t, fileLines(t, out)...)
	for _, part := range parts4 {
		for off := range int64(perPartition) {
			if all[part][off] == 0 {
				t.Fatalf("record %d/%d never delivered", part, off)
			}
		}
	}
}

// keyTurnsInput is n records "KEY I" for each key, the keys taking turns,
// so that with --max-open-keys 1 every record is a batch of its own.
func keyTurnsInput(keys []string, n int) string {
	var b strings.Builder
	for i := range n {
		for _, k := range keys {
			fmt.Fprintf(&b, "%s %d\n", k, i)
		}
	}
	return b.String()
}

// checkKeyTurns fails unless out holds each key's n records once each, in
// the order of the input.
func checkKeyTurns(t *testing.T, out string, keys []string, n int) {
	t.Helper()
	next := map[string]int{}
	for l := range strings.Lines(out) {
		k, i, ok := strings.Cut(strings.TrimSuffix(l, "\n"), " ")
		if !ok {
			t.Fatalf("mangled record %q", l)
		}
		if want := strconv.Itoa(next[k]); i != want {
			t.Fatalf("key %s: record %s where %s was due", k, i, want)
		}
		next[k]++
	}
	for _, k := range keys {
		if next[k] != n {
			t.Fatalf("key %s: %d records, want %d", k, next[k], n)
		}
	}
}

// A key's batches are delivered one after another, a retried one included,
// whatever -j; keys go in parallel. The endpoint takes a random while over
// each request and fails a fifth of them, and logs a body when it answers.
func TestPartitionByKeepsOrderInParallel(t *testing.T) {
	keys := []string{"a", "b", "c"}
	const n = 300
	in := keyTurnsInput(keys, n)
	for _, j := range []string{"4", "16"} {
		t.Run("j="+j, func(t *testing.T) {
			var mu sync.Mutex
			var log strings.Builder
			inFlight, most := 0, 0
			srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
				mu.Lock()
				inFlight++
				most = max(most, inFlight)
				mu.Unlock()
				<-time.NewTimer(time.Duration(rand.IntN(2000)) * time.Microsecond).C // work that takes a while
				mu.Lock()
				defer mu.Unlock()
				inFlight--
				if rand.IntN(5) == 0 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return http.StatusServiceUnavailable
				}
				log.Write(body)
				return http.StatusOK
			})
			r := run(t, strings.NewReader(in), "--partition-by", "{field:1}", "--field-delimiter", " ",
				"--max-open-keys", "1", "-j", j, "--retries", "20", "--backoff", "1ms", "--max-backoff", "3ms",
				"http", srv.URL)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			mu.Lock()
			defer mu.Unlock()
			checkKeyTurns(t, log.String(), keys, n)
			if most < 2 {
				t.Errorf("at most %d requests at once: keys did not go in parallel", most)
			}
		})
	}
}
