package sinks

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// deliverAll runs records through a real pipeline into sink, so tests see
// batches exactly as the core builds them.
func deliverAll(t *testing.T, sink batcher.Sink, maxRecords int, records ...string) batcher.Stats {
	t.Helper()
	recs := make([]batcher.Record, len(records))
	for i, r := range records {
		recs[i].Data = []byte(r)
	}
	p := &batcher.Pipeline{Source: sliceSource(recs), Sink: sink,
		Config: batcher.Config{MaxRecords: maxRecords, Delim: '\n'}}
	st, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

type sliceSource []batcher.Record

func (s sliceSource) Run(ctx context.Context, out chan<- []batcher.Record) error {
	select {
	case out <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestFileAppends(t *testing.T) {
	name := filepath.Join(t.TempDir(), "out.log")
	if err := os.WriteFile(name, []byte("before\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFile(name, FileOptions{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	deliverAll(t, s, 2, "a", "b\r", "\xff")
	if got, _ := os.ReadFile(name); string(got) != "before\na\nb\r\n\xff\n" {
		t.Fatalf("file holds %q", got)
	}
}

func TestFileCreatesWith0644(t *testing.T) {
	name := filepath.Join(t.TempDir(), "new")
	s, err := OpenFile(name, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	// The umask may take bits away, never add them.
	if fi.Mode().Perm()&^0o644 != 0 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

func TestFileOpenErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{dir, filepath.Join(dir, "missing", "x")} {
		_, err := OpenFile(name, FileOptions{})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPerBatchWritesOneFileEach(t *testing.T) {
	dir := t.TempDir()
	s, err := NewPerBatch(filepath.Join(dir, "sub", "{date}", "b-{seq}.txt"), Lines)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return time.Date(2026, 11, 23, 10, 4, 5, 0, time.UTC) }
	deliverAll(t, s, 2, "a", "b", "c")
	for name, want := range map[string]string{"b-1.txt": "a\nb\n", "b-2.txt": "c\n"} {
		got, err := os.ReadFile(filepath.Join(dir, "sub", "2026-11-23", name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "sub", "2026-11-23", ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestPerBatchTimeName(t *testing.T) {
	s, _ := NewPerBatch("x/{time}-{seq}", Lines)
	s.now = func() time.Time { return time.Date(2026, 11, 23, 10, 4, 5, 0, time.FixedZone("X", 3600)) }
	if got := s.Name(&batcher.Batch{Seq: 7}); got != "x/20261123T090405Z-7" {
		t.Fatal(got)
	}
}

func TestPerBatchNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "1.txt")
	os.WriteFile(name, []byte("keep"), 0o644)
	s, _ := NewPerBatch(filepath.Join(dir, "{seq}.txt"), Lines)
	p := &batcher.Pipeline{Source: sliceSource{{Data: []byte("new")}}, Sink: s,
		Config: batcher.Config{Delim: '\n', Retries: 3}}
	st, err := p.Run(context.Background())
	if !errors.Is(err, fs.ErrExist) || st.Undelivered != 1 || st.Retries != 0 {
		t.Fatalf("err %v stats %+v", err, st)
	}
	if got, _ := os.ReadFile(name); string(got) != "keep" {
		t.Fatalf("overwritten: %q", got)
	}
}

func TestPerBatchTemplateErrors(t *testing.T) {
	for _, tmpl := range []string{"", "dir/", "{sequence}.txt", "{seq"} {
		if _, err := NewPerBatch(tmpl, Lines); err == nil {
			t.Errorf("%q accepted", tmpl)
		}
	}
}

// BenchmarkFileAppend appends batches of 1000 100-byte lines: one op is
// one batch.
func BenchmarkFileAppend(b *testing.B) {
	out := filepath.Join(b.TempDir(), "out")
	s, err := OpenFile(out, FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := make([][]byte, 1000)
	for i := range recs {
		recs[i] = []byte(strings.Repeat("x", 99))
	}
	batch := batchOf(b, '\n', recs...)
	b.SetBytes(int64(batch.Size()))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := s.Deliver(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		if n++; n%1000 == 0 { // keep the file to 100 MB, not gigabytes
			b.StopTimer()
			if err := os.Truncate(out, 0); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.N)*float64(batch.Len())/b.Elapsed().Seconds(), "records/s")
}

func TestFileRefusesSymlinkUnlessTold(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(link, FileOptions{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlink opened: %v", err)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("target created through the link")
	}
	s, err := OpenFile(link, FileOptions{FollowSymlinks: true})
	if err != nil {
		t.Fatal(err)
	}
	deliverAll(t, s, 10, "a")
	if got, _ := os.ReadFile(target); string(got) != "a\n" {
		t.Fatalf("target holds %q", got)
	}
}

func TestFileFormats(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "out.json")
	s, err := OpenFile(name, FileOptions{Format: JSON})
	if err != nil {
		t.Fatal(err)
	}
	recs := []batcher.Record{{Data: []byte(`{"a":1}`)}, {Data: []byte(`nope`)}, {Data: []byte(`2`)}}
	dl := &memDeadLetter{}
	p := &batcher.Pipeline{Source: sliceSource(recs), Sink: s, Config: batcher.Config{Delim: '\n', DeadLetter: dl}}
	st, err := p.Run(context.Background())
	if err != nil || st.Delivered != 2 || st.DeadLettered != 1 {
		t.Fatalf("err %v stats %+v", err, st)
	}
	if got, _ := os.ReadFile(name); string(got) != `[{"a":1},2]`+"\n" {
		t.Fatalf("file holds %q", got)
	}
	if string(dl.data) != "nope\n" {
		t.Fatalf("dead letter holds %q", dl.data)
	}
}

type memDeadLetter struct{ data []byte }

func (d *memDeadLetter) Write(ctx context.Context, b *batcher.Batch, reason error) error {
	d.data = append(d.data, b.Bytes()...)
	return nil
}

func TestPathSafe(t *testing.T) {
	for in, want := range map[string]string{
		"orders": "orders", "a.b-c_d": "a.b-c_d", "..": "%2E%2E", ".": "%2E", "": "%",
		"../../etc": "..%2F..%2Fetc", "a/b": "a%2Fb", "a_b": "a_b", "x\x00y": "x%00y", "é": "%C3%A9",
		"/etc/passwd": "%2Fetc%2Fpasswd", "%": "%25",
	} {
		if got := pathSafe(in); got != want {
			t.Errorf("pathSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPerBatchTopicStaysInItsDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := NewPerBatch(filepath.Join(dir, "{topic}-{partition}-{seq}"), Lines)
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]string{"orders": "orders-3-1", "../../x": "..%2F..%2Fx-3-1", "..": "%2E%2E-3-1"} {
		recs := []batcher.Record{{Data: []byte("a"), Meta: &batcher.Meta{Topic: topic, Partition: 3}}}
		p := &batcher.Pipeline{Source: sliceSource(recs), Sink: sinkFunc(func(ctx context.Context, b *batcher.Batch) error {
			if got := s.Name(b); got != filepath.Join(dir, want) {
				t.Errorf("topic %q: %q, want %q", topic, got, filepath.Join(dir, want))
			}
			return nil
		}), Config: batcher.Config{Delim: '\n'}}
		if _, err := p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
