package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parquetCheck has pyarrow and DuckDB read files (in that order) and
// compare their rows with the JSON rows in expected (testdata/parquet),
// with testdata/parquet_check.py. Without the modules the test is skipped,
// except in CI, where it fails.
func parquetCheck(t *testing.T, expected string, args []string, files ...string) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is needed to read Parquet files with pyarrow and DuckDB")
		}
		t.Skip("no python3 to read Parquet files with")
	}
	argv := append([]string{repoPath("testdata/parquet_check.py")}, args...)
	if !filepath.IsAbs(expected) {
		expected = repoPath("testdata/parquet", expected)
	}
	argv = append(argv, expected)
	argv = append(argv, files...)
	out, err := exec.Command("python3", argv...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		if os.Getenv("CI") != "" {
			t.Fatalf("pyarrow and duckdb are needed (pip install pyarrow duckdb): %s", out)
		}
		t.Skipf("no pyarrow or duckdb: %s", out)
	}
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Log(strings.TrimSpace(string(out)))
}

// seqFiles lists dir/1.parquet … dir/n.parquet, failing unless these are
// all the files there.
func seqFiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%d files in %s, want %d: %v", len(ents), dir, n, names)
	}
	files := make([]string, n)
	for i := range files {
		files[i] = filepath.Join(dir, strconv.Itoa(i+1)+".parquet")
	}
	return files
}

func TestParquetTypesEachCodec(t *testing.T) {
	in, err := os.ReadFile(repoPath("testdata/parquet/types.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	for _, codec := range []struct{ flag, name string }{
		{"zstd", "ZSTD"}, {"gzip", "GZIP"}, {"snappy", "SNAPPY"}, {"none", "UNCOMPRESSED"},
	} {
		t.Run(codec.flag, func(t *testing.T) {
			var runs [2][][]byte
			var files []string
			for i := range runs {
				dir := filepath.Join(t.TempDir(), "out")
				r := run(t, bytes.NewReader(in), "-n", "2", "file", "--per-batch", dir+"/{seq}.parquet",
					"--format", "parquet", "--parquet-schema", repoPath("testdata/parquet/types.schema.json"), "--compress", codec.flag)
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				files = seqFiles(t, dir, 3)
				for _, f := range files {
					runs[i] = append(runs[i], []byte(readFile(t, f)))
				}
			}
			for i := range runs[0] {
				if !bytes.Equal(runs[0][i], runs[1][i]) {
					t.Errorf("batch %d: two runs wrote different bytes", i+1)
				}
			}
			parquetCheck(t, "types.expected.json", []string{"--codec", codec.name}, files...)
		})
	}
}

const parquetBad = `{"seq":1,"msg":"a"}
not json
{"msg":"no seq"}
{"seq":"2","msg":"a string for a number"}
{"seq":3,"msg":"b"}
`

func TestParquetBadRecordsDeadLettered(t *testing.T) {
	tmp := t.TempDir()
	schema := filepath.Join(tmp, "schema.json")
	if err := os.WriteFile(schema, []byte(`[{"name":"seq","type":"int64","required":true},{"name":"msg","type":"string"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	dl := filepath.Join(tmp, "dead.ndjson")
	out := filepath.Join(tmp, "out")
	r := run(t, strings.NewReader(parquetBad), "-n", "10", "--dead-letter", dl,
		"file", "--per-batch", out+"/{seq}.parquet", "--format", "parquet", "--parquet-schema", schema)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3 (dead-lettered): %s", r.code, r.stderr)
	}
	want := "not json\n{\"msg\":\"no seq\"}\n{\"seq\":\"2\",\"msg\":\"a string for a number\"}\n"
	if got := readFile(t, dl); got != want {
		t.Errorf("dead letter:\n%s\nwant\n%s", got, want)
	}
	for _, reason := range []string{"not valid JSON", "required field seq is missing", `field seq is the string \"2\", not an int64`} {
		if !strings.Contains(r.stderr, reason) {
			t.Errorf("stderr does not give the reason %q:\n%s", reason, r.stderr)
		}
	}
	parquetCheck(t, "bad.expected.json", nil, seqFiles(t, out, 1)...)

	// Without a dead letter they are undelivered: exit 1, counted.
	out2 := filepath.Join(tmp, "out2")
	r = run(t, strings.NewReader(parquetBad), "-n", "10",
		"file", "--per-batch", out2+"/{seq}.parquet", "--format", "parquet", "--parquet-schema", schema)
	if r.code != 1 || !strings.Contains(r.stderr, "3 undelivered") {
		t.Fatalf("exit %d, want 1 and 3 undelivered: %s", r.code, r.stderr)
	}
	parquetCheck(t, "bad.expected.json", nil, seqFiles(t, out2, 1)...)
}

func TestParquetInferredSchema(t *testing.T) {
	in := `{"id":1,"name":"ann","score":1.5,"ok":true,"tags":["x"],"geo":{"lat":1.25,"lon":2},"note":null}
{"id":2,"name":"Zoë ✓","score":2,"ok":false,"tags":[],"geo":{"lat":-3,"lon":4.5},"extra":"later"}
`
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out")
	r := run(t, strings.NewReader(in), "file", "--per-batch", out+"/{seq}.parquet", "--format", "parquet", "--parquet-schema", "infer")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	_, schema, ok := strings.Cut(r.stderr, "--parquet-schema):\n")
	schema, _, _ = strings.Cut(schema, "]\n")
	if !ok || !strings.Contains(schema, `{"name":"score","type":"double"}`) {
		t.Fatalf("stderr does not print the inferred schema:\n%s", r.stderr)
	}
	parquetCheck(t, "infer.expected.json", nil, seqFiles(t, out, 1)...)

	// The printed schema, pinned, gives the same file.
	pinned := filepath.Join(tmp, "schema.json")
	if err := os.WriteFile(pinned, []byte(schema+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(tmp, "out2")
	r = run(t, strings.NewReader(in), "file", "--per-batch", out2+"/{seq}.parquet", "--format", "parquet", "--parquet-schema", pinned)
	if r.code != 0 {
		t.Fatalf("exit %d with the pinned schema: %s", r.code, r.stderr)
	}
	if readFile(t, out+"/1.parquet") != readFile(t, out2+"/1.parquet") {
		t.Error("the pinned schema gave another file than the inferred one")
	}
}

func TestParquetUsage(t *testing.T) {
	checkUsage(t, []usageCase{
		{[]string{"file", "--format", "parquet", "out.parquet"}, "give --per-batch TEMPLATE"},
		{[]string{"file", "--format", "parquet", "-"}, "give --per-batch TEMPLATE"},
		{[]string{"file", "--per-batch", "o/{seq}.parquet", "--format", "parquet"}, "needs --parquet-schema"},
		{[]string{"file", "--per-batch", "o/{seq}", "--parquet-schema", "infer"}, "--parquet-schema is for --format parquet"},
		{[]string{"file", "--per-batch", "o/{seq}", "--format", "parquet", "--parquet-schema", "infer", "--compress", "lzma"}, `not "lzma"`},
		{[]string{"file", "--per-batch", "o/{seq}", "--format", "parquet", "--parquet-schema", "infer", "--compress", "zstd:3"}, "the codec takes no level"},
		{[]string{"file", "--per-batch", "o/{seq}", "--compress", "snappy"}, "--compress snappy is for --format parquet"},
		{[]string{"--topic", "t", "--kafka-brokers", "127.0.0.1:1", "--group", "g", "--exactly-once", "file", "--per-batch", "o/{first_offset}", "--format", "parquet", "--parquet-schema", "infer"}, "--parquet-schema infer with --exactly-once"},
		{[]string{"http", "--format", "parquet", "http://127.0.0.1:1/"}, "parquet is for whole files"},
		{[]string{"file", "--per-batch", "o/{seq}", "--format", "parquet", "--parquet-schema", "../testdata/parquet/types.ndjson"}, "parquet schema ../testdata/parquet/types.ndjson"},
	})
}

// TestParquetREADMERecipe runs the README's NDJSON recipe and its DuckDB
// query, in a directory of its own.
func TestParquetREADMERecipe(t *testing.T) {
	tmp := t.TempDir()
	c := exec.Command(bin, "-n", "300", "-b", "32M", "file", "--per-batch", "out/{date}/{run}-{seq}.parquet",
		"--format", "parquet", "--parquet-schema", repoPath("testdata/parquet/sample.schema.json"))
	c.Dir = tmp
	in, err := os.Open(repoPath("testdata/sample.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	c.Stdin = in
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	py := `import duckdb
duckdb.sql("SET TimeZone = 'UTC'")
rows = duckdb.sql("SELECT method, count(*), avg(ms) FROM read_parquet('out/**/*.parquet') GROUP BY method").fetchall()
total = duckdb.sql("SELECT count(*), sum(seq), min(ts) FROM read_parquet('out/**/*.parquet')").fetchall()[0]
print(sum(r[1] for r in rows), total[0], total[1], total[2].isoformat())
`
	out := pythonIn(t, tmp, py)
	if want := "1000 1000 500500 2025-11-23T10:00:02+00:00\n"; out != want {
		t.Errorf("DuckDB says %q, want %q", out, want)
	}
}

// pythonIn runs a Python program in dir and returns its stdout; without
// python3 or duckdb it skips, except in CI.
func pythonIn(t *testing.T, dir, program string) string {
	t.Helper()
	c := exec.Command("python3", "-c", program)
	c.Dir = dir
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "No module named") || errors.Is(err, exec.ErrNotFound) {
			if os.Getenv("CI") != "" {
				t.Fatalf("python3 with duckdb is needed: %v %s", err, stderr.String())
			}
			t.Skipf("no python3 with duckdb: %v %s", err, stderr.String())
		}
		t.Fatalf("python: %v: %s", err, stderr.String())
	}
	return string(out)
}
