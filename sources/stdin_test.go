package sources

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/batchpipe/batchpipe/batcher"
)

// frame runs a Stream over r and returns the records it sent, copied as
// they arrive (the source reuses its memory), and the errors of records it
// could not take whole.
func frame(t testing.TB, s *Stream) (recs []string, bad []error, err error) {
	out := make(chan []batcher.Record)
	done := make(chan error, 1)
	go func() {
		done <- s.Run(context.Background(), out)
		close(out)
	}()
	for chunk := range out {
		for _, r := range split(t, chunk, s.Delim) {
			if r.Err != nil {
				bad = append(bad, r.Err)
				recs = append(recs, "<too large>")
				continue
			}
			recs = append(recs, string(r.Data))
		}
	}
	return recs, bad, <-done
}

// split returns a chunk's records with its blocks split into records, and
// fails t where a block breaks its contract.
func split(t testing.TB, chunk []batcher.Record, delim byte) []batcher.Record {
	var recs []batcher.Record
	for _, r := range chunk {
		if !r.Block {
			recs = append(recs, r)
			continue
		}
		if len(r.Data) == 0 || r.Data[len(r.Data)-1] != delim || r.Meta != nil || r.Err != nil {
			t.Fatalf("bad block %+v", r)
		}
		for rec := range bytes.SplitSeq(r.Data[:len(r.Data)-1], []byte{delim}) {
			recs = append(recs, batcher.Record{Data: rec})
		}
	}
	return recs
}

func TestFraming(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		delim byte
		want  []string
	}{
		{"empty", "", '\n', nil},
		{"one empty record", "\n", '\n', []string{""}},
		{"lines", "a\nbb\nccc\n", '\n', []string{"a", "bb", "ccc"}},
		{"no trailing delimiter", "a\nb", '\n', []string{"a", "b"}},
		{"empty records", "\n\na\n\n", '\n', []string{"", "", "a", ""}},
		{"CR kept", "a\r\nb\r\n", '\n', []string{"a\r", "b\r"}},
		{"invalid UTF-8 kept", "\xff\xfe\n\xc3\x28\n", '\n', []string{"\xff\xfe", "\xc3\x28"}},
		{"NUL delimiter", "a b\nc\x00d\x00", 0, []string{"a b\nc", "d"}},
		{"NUL inside a line", "a\x00b\n", '\n', []string{"a\x00b"}},
		{"tab delimiter", "a\tb", '\t', []string{"a", "b"}},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data+EOF": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			for _, size := range []int{1, 2, 3, 4096} {
				recs, bad, err := frame(t, &Stream{R: mk(tt.in), Delim: tt.delim, ReadSize: size})
				if err != nil || bad != nil {
					t.Fatalf("%s/%s/%d: err %v bad %v", tt.name, rname, size, err, bad)
				}
				if strings.Join(recs, "|") != strings.Join(tt.want, "|") || len(recs) != len(tt.want) {
					t.Errorf("%s/%s/%d: got %q, want %q", tt.name, rname, size, recs, tt.want)
				}
			}
		}
	}
}

func TestHugeRecord(t *testing.T) {
	line := bytes.Repeat([]byte("0123456789"), 5<<20) // 50 MB
	in := append(append(append([]byte("a\n"), line...), '\n'), "b\n"...)
	recs, bad, err := frame(t, &Stream{R: bytes.NewReader(in), Delim: '\n'})
	if err != nil || bad != nil || len(recs) != 3 || recs[1] != string(line) || recs[2] != "b" {
		t.Fatalf("err %v bad %v, %d records", err, bad, len(recs))
	}
}

func TestTooLargeRecordIsSkipped(t *testing.T) {
	for _, size := range []int{3, 16, 4096} {
		in := "ok\n" + strings.Repeat("x", 100) + "\nfine\n" + strings.Repeat("y", 11)
		recs, bad, err := frame(t, &Stream{R: strings.NewReader(in), Delim: '\n', MaxRecordBytes: 10, ReadSize: size})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"ok", "<too large>", "fine", "<too large>"}; strings.Join(recs, ",") != strings.Join(want, ",") {
			t.Fatalf("read size %d: got %q, want %q", size, recs, want)
		}
		var tl *batcher.TooLargeError
		if !errors.As(bad[0], &tl) || tl.Size != 100 || tl.Limit != 10 {
			t.Fatalf("read size %d: %v", size, bad[0])
		}
		if !errors.As(bad[1], &tl) || tl.Size != 11 {
			t.Fatalf("read size %d: %v", size, bad[1])
		}
	}
}

// TestShortRecordsInChunks reads thousands of short records per read, and
// every third one over the limit: the chunks stay within maxFramed, so
// their record slices stay small whatever the input, and no record is lost
// or changed, also where one spans two reads.
func TestShortRecordsInChunks(t *testing.T) {
	var in bytes.Buffer
	var want []string
	for i := range 5*maxFramed + 7 {
		switch i % 3 {
		case 0:
			in.WriteString("xx")
			want = append(want, "<too large>")
		case 1:
			in.WriteString("x")
			want = append(want, "x")
		default:
			want = append(want, "")
		}
		in.WriteByte('\n')
	}
	in.WriteString("z")
	want = append(want, "z")
	for _, r := range []io.Reader{bytes.NewReader(in.Bytes()), iotest.HalfReader(bytes.NewReader(in.Bytes()))} {
		out := make(chan []batcher.Record)
		done := make(chan error, 1)
		go func() {
			done <- (&Stream{R: r, Delim: '\n', MaxRecordBytes: 1, ReadSize: 1 << 20}).Run(context.Background(), out)
			close(out)
		}()
		var got []string
		chunks := 0
		for chunk := range out {
			if len(chunk) > maxFramed {
				t.Errorf("chunk of %d records, more than %d", len(chunk), maxFramed)
			}
			chunks++
			for _, rec := range split(t, chunk, '\n') {
				if rec.Err != nil {
					got = append(got, "<too large>")
				} else {
					got = append(got, string(rec.Data))
				}
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d records differ from the input's %d", len(got), len(want))
		}
		if chunks < 4 {
			t.Fatalf("%d chunks for %d records", chunks, len(want))
		}
	}
}

func TestReadErrorAfterRecords(t *testing.T) {
	r := io.MultiReader(strings.NewReader("a\nb\npartial"), iotest.ErrReader(errors.New("input/output error")))
	recs, _, err := frame(t, &Stream{R: r, Delim: '\n'})
	if err == nil || err.Error() != "input/output error" {
		t.Fatalf("err %v", err)
	}
	if strings.Join(recs, ",") != "a,b" {
		t.Fatalf("records read before the error not sent: %q", recs)
	}
}

// scriptReader returns its reads one by one; once they run out, a read
// says so on blocked and waits for release, then returns io.EOF.
type scriptReader struct {
	reads            []string
	blocked, release chan struct{}
}

func (r *scriptReader) Read(p []byte) (int, error) {
	if len(r.reads) == 0 {
		close(r.blocked)
		<-r.release
		return 0, io.EOF
	}
	n := copy(p, r.reads[0])
	r.reads = r.reads[1:]
	return n, nil
}

// TestStopSendsWhatWasRead cancels the stream while it holds a read not yet
// framed and half a record: the read's records still go out, and the half
// record comes with ErrCutShort, so no byte taken from the input is lost
// unsaid.
func TestStopSendsWhatWasRead(t *testing.T) {
	r := &scriptReader{reads: []string{"a\n", "b\ncc"}, blocked: make(chan struct{}), release: make(chan struct{})}
	defer close(r.release)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []batcher.Record)
	done := make(chan error, 1)
	go func() { done <- (&Stream{R: r, Delim: '\n'}).Run(ctx, out) }()
	// The stream waits to send "a"; meanwhile "b\ncc" is read and the
	// next read blocks.
	<-r.blocked
	cancel()
	var got []string
	var cut error
	for {
		select {
		case chunk := <-out:
			for _, rec := range split(t, chunk, '\n') {
				if rec.Err != nil {
					cut = rec.Err
					got = append(got, "cut:"+string(rec.Data))
					continue
				}
				got = append(got, string(rec.Data))
			}
			continue
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v", err)
			}
		}
		break
	}
	if want := []string{"a", "b", "cut:cc"}; !slices.Equal(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	if !errors.Is(cut, batcher.ErrCutShort) || !strings.Contains(cut.Error(), "first 2 bytes") {
		t.Fatalf("cut record's error: %v", cut)
	}
}

func TestStopsOnCancelWhileReadBlocks(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []batcher.Record)
	done := make(chan error)
	go func() { done <- (&Stream{R: pr, Delim: '\n'}).Run(ctx, out) }()
	pw.Write([]byte("a\n"))
	if got := split(t, <-out, '\n'); len(got) != 1 || string(got[0].Data) != "a" {
		t.Fatalf("%+v", got)
	}
	cancel() // the read of the next line is blocked
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

// FuzzFraming checks that framing gives back the input's records, whatever
// the bytes, read sizes and record limit.
func FuzzFraming(f *testing.F) {
	f.Add([]byte("a\nb\n"), byte('\n'), uint8(1), uint8(0))
	f.Add([]byte("a\x00b"), byte(0), uint8(3), uint8(0))
	f.Add([]byte("\n\n\r\n\xff"), byte('\n'), uint8(2), uint8(0))
	f.Add([]byte("ok\ntoo long\nfine\n\nlonger still"), byte('\n'), uint8(63), uint8(4))
	f.Fuzz(func(t *testing.T, in []byte, delim byte, size, limit uint8) {
		s := &Stream{R: bytes.NewReader(in), Delim: delim, ReadSize: int(size%64) + 1, MaxRecordBytes: int(limit)}
		recs, _, err := frame(t, s)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		if len(in) > 0 {
			for rec := range bytes.SplitSeq(bytes.TrimSuffix(in, []byte{delim}), []byte{delim}) {
				if limit > 0 && len(rec) > int(limit) {
					want = append(want, "<too large>")
				} else {
					want = append(want, string(rec))
				}
			}
		}
		if !slices.Equal(recs, want) {
			t.Fatalf("records %q, want %q", recs, want)
		}
	})
}

// BenchmarkStream frames 100-byte lines from memory: one op is one record.
func BenchmarkStream(b *testing.B) {
	line := append(bytes.Repeat([]byte("x"), 99), '\n')
	in := bytes.Repeat(line, 10000)
	b.SetBytes(100)
	b.ReportAllocs()
	r := &repeatReader{data: in, left: b.N * 100}
	s := &Stream{R: r, Delim: '\n'}
	out := make(chan []batcher.Record)
	go func() {
		s.Run(context.Background(), out)
		close(out)
	}()
	n := 0
	for chunk := range out {
		for _, r := range chunk {
			if r.Block {
				n += bytes.Count(r.Data, []byte{'\n'})
			} else {
				n++
			}
		}
	}
	if n != b.N {
		b.Fatalf("%d records, want %d", n, b.N)
	}
}

type repeatReader struct {
	data []byte
	off  int
	left int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.left)], r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	r.left -= n
	return n, nil
}

type discardSink struct{}

func (discardSink) Deliver(context.Context, *batcher.Batch) error { return nil }

// BenchmarkStreamPipeline frames 100-byte lines and batches them by 1000,
// the whole path but the I/O: one op is one record.
func BenchmarkStreamPipeline(b *testing.B) {
	line := append(bytes.Repeat([]byte("x"), 99), '\n')
	in := bytes.Repeat(line, 10000)
	b.SetBytes(100)
	b.ReportAllocs()
	p := &batcher.Pipeline{
		Source: &Stream{R: &repeatReader{data: in, left: b.N * 100}, Delim: '\n'},
		Sink:   discardSink{},
		Config: batcher.Config{MaxRecords: 1000, Delim: '\n'},
	}
	st, err := p.Run(context.Background())
	if err != nil || st.Delivered != int64(b.N) {
		b.Fatalf("%v %+v", err, st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
