package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/IBM/sarama"
	pq "github.com/parquet-go/parquet-go"
)

// TestKafkaParquetExactlyOnceKills drains 4 partitions of JSON records
// into Parquet files named by their offsets with --exactly-once, killing
// batchpipe with SIGKILL 10 times, each run with another -n. In the end
// each partition's files tile its offsets, hold each record once, carry the
// batch id in their metadata, and read in pyarrow and DuckDB as the topic.
func TestKafkaParquetExactlyOnceKills(t *testing.T) {
	t.Parallel() // it waits on session timeouts, as the other kill tests do
	const perPartition = 10000
	k := newKafka(t, 4)
	tmp := t.TempDir()
	schema := parquetTopic(t, k, perPartition, tmp)
	out := filepath.Join(tmp, "out")
	args := func(n int) []string {
		return []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end",
			"-n", strconv.Itoa(n), "-j", "4", "--commit-interval", "20ms", "--kafka-session-timeout", "1s",
			"file", "--per-batch", filepath.Join(out, "{partition}", "{first_offset}-{last_offset}.parquet"),
			"--format", "parquet", "--parquet-schema", schema}
	}
	kills := 0
	for kill := range 10 {
		p := start(t, args(100+kill*97)...)
		want := 1 + kill%4
		p.waitLine(fmt.Sprintf("%d batches delivered, or the end", want), func(string) bool {
			e := p.stderr()
			return strings.Count(e, "outcome=delivered") >= want || strings.Contains(e, "drained")
		})
		p.signal(syscall.SIGKILL)
		if p.wait() == 0 {
			t.Logf("run %d finished before the kill", kill)
			break
		}
		kills++
	}
	r := run(t, nil, args(555)...)
	if r.code != 0 {
		t.Fatalf("final drain: exit %d:\n%s", r.code, r.stderr)
	}

	type row struct {
		P int32  `parquet:"p"`
		I int64  `parquet:"i"`
		S string `parquet:"s,optional"`
	}
	files := map[int32][]offsetFile{}
	var names []string
	for _, part := range parts4 {
		dir := filepath.Join(out, strconv.Itoa(int(part)))
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue // a temporary file a kill left behind
			}
			f, l, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".parquet"), "-")
			first, err1 := strconv.ParseInt(f, 10, 64)
			last, err2 := strconv.ParseInt(l, 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("file %s is not named FIRST-LAST.parquet", e.Name())
			}
			name := filepath.Join(dir, e.Name())
			data := []byte(readFile(t, name))
			pf, err := pq.OpenFile(strings.NewReader(string(data)), int64(len(data)))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if id, _ := pf.Lookup("batchpipe.batch_id"); id != fmt.Sprintf("%s-%d-%d-%d", k.topic, part, first, last) {
				t.Errorf("%s: batchpipe.batch_id %q", name, id)
			}
			rows, err := pq.Read[row](strings.NewReader(string(data)), int64(len(data)))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var lines []string
			for _, r := range rows {
				lines = append(lines, fmt.Sprintf("%d/%d/%s", r.P, r.I, r.S))
			}
			files[part] = append(files[part], offsetFile{first, last, lines})
		}
	}
	n := checkOffsetFiles(t, files, perPartition)
	t.Logf("%d kills, %d files", kills, n)

	// The union, in partition and offset order, as real readers see it.
	for _, part := range parts4 {
		fs := files[part]
		slices.SortFunc(fs, func(a, b offsetFile) int { return int(a.first - b.first) })
		for _, f := range fs {
			names = append(names, filepath.Join(out, strconv.Itoa(int(part)), fmt.Sprintf("%d-%d.parquet", f.first, f.last)))
		}
	}
	checkParquetTopic(t, tmp, perPartition, names)
}

// parquetTopic fills each of k's four partitions with perPartition JSON
// records {"p", "i", "s"}, and returns the path of their schema, written
// in dir.
func parquetTopic(t *testing.T, k *kafkaEnv, perPartition int, dir string) (schema string) {
	t.Helper()
	var msgs []*sarama.ProducerMessage
	for _, p := range parts4 {
		for i := range perPartition {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: k.topic, Partition: p,
				Value: sarama.StringEncoder(fmt.Sprintf(`{"p":%d,"i":%d,"s":"%s"}`, p, i, filler))})
		}
	}
	if err := newProducer(t, k.addr).p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	schema = filepath.Join(dir, "schema.json")
	if err := os.WriteFile(schema, []byte(`[{"name":"p","type":"int32","required":true},{"name":"i","type":"int64","required":true},{"name":"s","type":"string"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	return schema
}

// checkParquetTopic has the real readers compare the files names, in
// partition and offset order, with parquetTopic's records.
func checkParquetTopic(t *testing.T, dir string, perPartition int, names []string) {
	t.Helper()
	var want []map[string]any
	for _, part := range parts4 {
		for i := range perPartition {
			want = append(want, map[string]any{"p": part, "i": i, "s": filler})
		}
	}
	expected := filepath.Join(dir, "expected.json")
	data, _ := json.Marshal(want)
	if err := os.WriteFile(expected, data, 0o644); err != nil {
		t.Fatal(err)
	}
	parquetCheck(t, expected, []string{"--codec", "ZSTD"}, names...)
}
