package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	pq "github.com/parquet-go/parquet-go"
)

// TestS3Parquet writes each batch as a Parquet object, which pyarrow and
// DuckDB read as the input; run again, every object is found in place: the
// same batch gave the same bytes.
func TestS3Parquet(t *testing.T) {
	st := newS3Test(t, startS3Server(t))
	bkt := st.bucket("pqfiles")
	in, err := os.ReadFile(repoPath("testdata/parquet/types.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	for _, codec := range []struct{ flag, name string }{{"", "ZSTD"}, {"snappy", "SNAPPY"}} {
		t.Run(codec.name, func(t *testing.T) {
			prefix := strings.ToLower(codec.name) + "/"
			args := []string{"--format", "parquet", "--parquet-schema", repoPath("testdata/parquet/types.schema.json")}
			if codec.flag != "" {
				args = append(args, "--compress", codec.flag)
			}
			args = append(args, "s3://"+bkt+"/"+prefix+"{seq}.parquet")
			for run1 := range 2 {
				r := run(t, bytes.NewReader(in), append([]string{"-n", "2"}, st.s3(args...)...)...)
				if r.code != 0 {
					t.Fatalf("run %d: exit %d: %s", run1+1, r.code, r.stderr)
				}
				if run1 == 1 && !strings.Contains(r.stderr, "3 batches found in place") {
					t.Errorf("run 2 did not find its 3 objects in place:\n%s", r.stderr)
				}
			}
			keys := bySeq(st.keys(bkt, prefix))
			if len(keys) != 3 {
				t.Fatalf("%d objects, want 3: %q", len(keys), keys)
			}
			var files []string
			for _, k := range keys {
				body, out := st.get(bkt, k)
				if ct := aws.ToString(out.ContentType); ct != "application/vnd.apache.parquet" || aws.ToString(out.ContentEncoding) != "" {
					t.Errorf("%s: Content-Type %q, Content-Encoding %q", k, ct, aws.ToString(out.ContentEncoding))
				}
				f := filepath.Join(t.TempDir(), filepath.Base(k))
				if err := os.WriteFile(f, body, 0o644); err != nil {
					t.Fatal(err)
				}
				files = append(files, f)
			}
			parquetCheck(t, "types.expected.json", []string{"--codec", codec.name}, files...)
		})
	}
}

// Killed with -9 ten times during an --exactly-once drain into hourly
// Parquet objects, runs again and again write every key once, and the
// objects hold the topic, each record once, with their batch id.
func TestS3KafkaParquetExactlyOnceKill9(t *testing.T) {
	endpoint, log := startS3ServerLog(t)
	st := newS3Test(t, endpoint)
	bkt := st.bucket("pqarchive")
	k := newKafka(t, 4)
	const perPart = 5000
	tmp := t.TempDir()
	schema := parquetTopic(t, k, perPart, tmp)
	args := func(extra ...string) []string {
		return append(append([]string{"--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--exactly-once",
			"-j", "4", "-t", "100ms", "--commit-interval", "20ms", "--kafka-session-timeout", "1s"}, extra...),
			st.s3("--format", "parquet", "--parquet-schema", schema,
				"s3://"+bkt+"/{topic}/{date}/{hour}/{partition}/{first_offset}-{last_offset}.parquet")...)
	}
	objects := func() int { return len(st.keys(bkt, k.topic+"/")) }
	kills := 0
	for i := range 10 {
		p := start(t, args("-n", strconv.Itoa(97+61*i))...)
		before := objects()
		kafkatest.Eventually(t, "a new object", func() bool { return objects() > before })
		p.signal(syscall.SIGKILL)
		p.wait()
		kills++
	}
	r := run(t, nil, args("-n", "250", "--until-end")...)
	if r.code != 0 {
		t.Fatalf("final run: exit %d: %s", r.code, r.stderr)
	}
	puts := putsByKey(log.String(), bkt, k.topic+"/")
	keys := st.keys(bkt, k.topic+"/")
	if len(puts) != len(keys) {
		t.Errorf("the server's log shows PUTs of %d keys, the bucket holds %d objects", len(puts), len(keys))
	}
	for key, n := range puts {
		if n != 1 {
			t.Errorf("%s written %d times", key, n)
		}
	}
	type row struct {
		P int32  `parquet:"p"`
		I int64  `parquet:"i"`
		S string `parquet:"s,optional"`
	}
	files := map[int32][]offsetFile{}
	paths := map[int32]map[int64]string{}
	for _, key := range keys {
		parts := strings.Split(key, "/") // topic/date/hour/partition/first-last.parquet
		if len(parts) != 5 {
			t.Fatalf("key %s is not TOPIC/DATE/HOUR/PARTITION/FIRST-LAST.parquet", key)
		}
		part, _ := strconv.Atoi(parts[3])
		f, l, _ := strings.Cut(strings.TrimSuffix(parts[4], ".parquet"), "-")
		first, _ := strconv.ParseInt(f, 10, 64)
		last, _ := strconv.ParseInt(l, 10, 64)
		body, _ := st.get(bkt, key)
		pf, err := pq.OpenFile(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if id, _ := pf.Lookup("batchpipe.batch_id"); id != fmt.Sprintf("%s-%d-%d-%d", k.topic, part, first, last) {
			t.Errorf("%s: batchpipe.batch_id %q", key, id)
		}
		rows, err := pq.Read[row](bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		var lines []string
		for _, r := range rows {
			lines = append(lines, fmt.Sprintf("%d/%d/%s", r.P, r.I, r.S))
		}
		files[int32(part)] = append(files[int32(part)], offsetFile{first, last, lines})
		path := filepath.Join(tmp, strings.ReplaceAll(key, "/", "_"))
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
		if paths[int32(part)] == nil {
			paths[int32(part)] = map[int64]string{}
		}
		paths[int32(part)][first] = path
	}
	n := checkOffsetFiles(t, files, perPart)
	t.Logf("%d kills, %d objects", kills, n)

	var names []string
	for _, part := range parts4 {
		firsts := make([]int64, 0, len(paths[part]))
		for f := range paths[part] {
			firsts = append(firsts, f)
		}
		slices.Sort(firsts)
		for _, f := range firsts {
			names = append(names, paths[part][f])
		}
	}
	checkParquetTopic(t, tmp, perPart, names)
}
