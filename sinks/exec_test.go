package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// TestExecHelperProcess is not a test: it is the child process the tests
// below run, acting out the role in BATCHPIPE_EXEC_HELPER.
func TestExecHelperProcess(t *testing.T) {
	role := os.Getenv("BATCHPIPE_EXEC_HELPER")
	if role == "" {
		return
	}
	code := 0
	switch role {
	case "cat":
		io.Copy(os.Stdout, os.Stdin)
	case "fail":
		os.Stderr.WriteString("helper: reading\nhelper: no space left on device\n\n")
		code = 4
	case "suicide":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	case "exit0":
	case "trap-term":
		// Report SIGTERM and exit 0: the work is done.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		os.Stderr.WriteString("ready\n")
		<-c
		os.Stderr.WriteString("got SIGTERM\n")
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		os.Stderr.WriteString("ready\n")
		<-time.NewTimer(time.Hour).C // until killed
	}
	os.Exit(code)
}

// helper returns a config that runs this test binary in role.
func helper(t *testing.T, role string) ExecConfig {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return ExecConfig{
		Argv: []string{self, "-test.run=^TestExecHelperProcess$"},
		// A race-enabled binary sleeps a second before a clean exit
		// unless told not to.
		Env:    append(os.Environ(), "BATCHPIPE_EXEC_HELPER="+role, "GORACE=atexit_sleep_ms=0"),
		Stdout: io.Discard,
		Stderr: io.Discard,
	}
}

func newExec(t *testing.T, cfg ExecConfig) *Exec {
	t.Helper()
	s, err := NewExec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// records is a source that sends one chunk.
type records []batcher.Record

func (r records) Run(ctx context.Context, out chan<- []batcher.Record) error {
	select {
	case out <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batches runs recs through a pipeline with cfg, calling f for every batch.
func batches(t *testing.T, cfg batcher.Config, recs []batcher.Record, f func(b *batcher.Batch)) {
	t.Helper()
	var mu sync.Mutex
	cfg.Delim = '\n'
	p := &batcher.Pipeline{Source: records(recs), Config: cfg, Sink: sinkFunc(func(ctx context.Context, b *batcher.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		f(b)
		return nil
	})}
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNewExecCommandNotFound(t *testing.T) {
	for _, name := range []string{"batchpipe-no-such-command", "./no-such-file", "/etc/passwd"} {
		_, err := NewExec(ExecConfig{Argv: []string{name}, Stdout: io.Discard, Stderr: io.Discard})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("cannot run %q", name)) {
			t.Errorf("%s: error %v, want it to say the command cannot run", name, err)
		}
	}
}

func TestExecEnviron(t *testing.T) {
	meta := func(topic string, part int32, off int64) *batcher.Meta {
		return &batcher.Meta{Topic: topic, Partition: part, Offset: off}
	}
	for _, tc := range []struct {
		name  string
		metas []*batcher.Meta
		want  []string
		key   string // with --partition-by: every record's key
	}{
		{"keyed", []*batcher.Meta{nil}, []string{"BATCHPIPE_KEY=a%25b%00"}, "a%b\x00"},
		{"stdin", []*batcher.Meta{nil, nil}, nil, ""},
		{"one partition", []*batcher.Meta{meta("hits", 3, 17), meta("hits", 3, 18), meta("hits", 3, 20)},
			[]string{"BATCHPIPE_TOPIC=hits", "BATCHPIPE_PARTITION=3", "BATCHPIPE_FIRST_OFFSET=17", "BATCHPIPE_LAST_OFFSET=20",
				"BATCHPIPE_BATCH_ID=hits-3-17-20"}, ""},
		{"two partitions", []*batcher.Meta{meta("hits", 3, 17), meta("hits", 4, 2)}, nil, ""},
		{"two topics", []*batcher.Meta{meta("hits", 3, 17), meta("misses", 3, 18)}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newExec(t, ExecConfig{Argv: []string{"true"}, Env: []string{"HOME=/h"}, Stdout: io.Discard, Stderr: io.Discard})
			var recs []batcher.Record
			for i, m := range tc.metas {
				recs = append(recs, batcher.Record{Data: fmt.Appendf(nil, "r%d", i), Meta: m})
			}
			var got []string
			cfg := batcher.Config{}
			if tc.key != "" {
				cfg.Key = func(dst []byte, r *batcher.Record) ([]byte, error) { return append(dst, tc.key...), nil }
			}
			batches(t, cfg, recs, func(b *batcher.Batch) {
				b.Attempt = 2
				got = s.environ(b, b.Len(), b.Size())
			})
			want := append([]string{"HOME=/h", "BATCHPIPE_SEQ=1",
				fmt.Sprintf("BATCHPIPE_RECORDS=%d", len(recs)), fmt.Sprintf("BATCHPIPE_BYTES=%d", 3*len(recs)),
				"BATCHPIPE_REASON=eof", "BATCHPIPE_ATTEMPT=2", "BATCHPIPE_RUN=" + RunID()}, tc.want...)
			if !slices.Equal(got, want) {
				t.Errorf("environment\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestArgvBuild(t *testing.T) {
	for _, tc := range []struct {
		name    string
		argv    []string
		records []string
		want    []string
		rejects []int
	}{
		{"appended", []string{"echo", "-n"}, []string{"a", "b c", ""}, []string{"echo", "-n", "a", "b c", ""}, nil},
		{"in place", []string{"cp", "{}", "/dest"}, []string{"a", "b"}, []string{"cp", "a", "b", "/dest"}, nil},
		{"in text", []string{"echo", "--id={}", "x{}y{}"}, []string{"1", "2"}, []string{"echo", "--id=1", "--id=2", "x1y1", "x2y2"}, nil},
		{"not in the command", []string{"{}x"}, []string{"1"}, []string{"{}x", "1"}, nil},
		{"a record with {}", []string{"echo", "<{}>"}, []string{"{}"}, []string{"echo", "<{}>"}, nil},
		{"NUL", []string{"echo"}, []string{"a", "b\x00", "c"}, []string{"echo", "a", "c"}, []int{1}},
		{"too long", []string{"echo"}, []string{"a", strings.Repeat("x", maxArgStrlen), strings.Repeat("x", maxArgStrlen-1)},
			[]string{"echo", "a", strings.Repeat("x", maxArgStrlen-1)}, []int{1}},
		{"too long in place", []string{"echo", "-{}"}, []string{strings.Repeat("x", maxArgStrlen-1)}, []string{"echo"}, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := newArgv("/bin/"+tc.argv[0], tc.argv, nil)
			if err != nil {
				t.Fatal(err)
			}
			var recs []batcher.Record
			for _, r := range tc.records {
				recs = append(recs, batcher.Record{Data: []byte(r)})
			}
			batches(t, batcher.Config{MaxBytes: 1 << 30}, recs, func(b *batcher.Batch) {
				got, rej := a.build(b)
				if !slices.Equal(got, tc.want) {
					t.Errorf("argv %.200q, want %.200q", got, tc.want)
				}
				var rejects []int
				if rej != nil {
					for _, r := range rej.Records {
						rejects = append(rejects, r.Index)
					}
				}
				if !slices.Equal(rejects, tc.rejects) {
					t.Errorf("rejected %v, want %v (%v)", rejects, tc.rejects, rej)
				}
				if err := a.check(got); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

// The limits BatchLimits gives the batcher keep every command line within
// room, and fill it well.
func TestArgvLimitsHold(t *testing.T) {
	// A big environment leaves ~100 KiB, so that batches are cut often.
	env := []string{"BIG=" + strings.Repeat("e", argLimit()-100<<10)}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, argv := range [][]string{
		{"echo"},
		{"echo", "-x", "{}"},
		{"echo", "--a={}", "fixed", "{}{}-{}"},
	} {
		a, err := newArgv("/bin/echo", argv, env)
		if err != nil {
			t.Fatal(err)
		}
		maxBytes, overhead := a.batchLimits()
		var recs []batcher.Record
		for range 3000 {
			recs = append(recs, batcher.Record{Data: bytes.Repeat([]byte("r"), rng.IntN(300))})
		}
		n, runs := 0, 0
		var used []int
		batches(t, batcher.Config{MaxRecords: 1 << 20, MaxBytes: maxBytes, PerRecordOverhead: overhead}, recs, func(b *batcher.Batch) {
			got, rej := a.build(b)
			if rej != nil {
				t.Fatalf("%q: rejected %v", argv, rej)
			}
			if err := a.check(got); err != nil {
				t.Fatalf("%q: %v", argv, err)
			}
			size := -a.fixedArgs
			for _, s := range got {
				size += len(s) + 1 + ptrSize
			}
			used = append(used, size)
			n += b.Len()
			runs++
		})
		if n != len(recs) || runs < 3 {
			t.Fatalf("%q: %d records in %d runs", argv, n, runs)
		}
		for _, u := range used[:len(used)-1] {
			if u < a.room*9/10 {
				t.Errorf("%q: a run used %d of %d bytes", argv, u, a.room)
			}
		}
	}
}

func TestArgvNoRoom(t *testing.T) {
	env := []string{"BIG=" + strings.Repeat("e", argLimit())}
	if _, err := newArgv("/bin/echo", []string{"echo"}, env); err == nil || !strings.Contains(err.Error(), "no room for records") {
		t.Errorf("error %v, want no room", err)
	}
}

func TestLineWriter(t *testing.T) {
	var writes []string
	w := &lineWriter{w: writerFunc(func(p []byte) (int, error) {
		writes = append(writes, string(p))
		return len(p), nil
	})}
	for _, p := range []string{"ab", "c\nde", "f\n\n", "g"} {
		w.Write([]byte(p))
	}
	w.finish()
	if want := []string{"abc\n", "def\n\n", "g\n"}; !slices.Equal(writes, want) {
		t.Errorf("writes %q, want %q", writes, want)
	}
	if got := w.lastLine(); got != `; stderr: abc (… last line: g)` {
		t.Errorf("last line %s", got)
	}

	writes = nil
	w = &lineWriter{w: writes2(&writes)}
	long := strings.Repeat("z", maxStderrLine)
	w.Write([]byte(long[:10]))
	w.Write([]byte(long[10:]))
	w.Write([]byte("tail\n   \n"))
	if want := []string{long, "tail\n   \n"}; !slices.Equal(writes, want) {
		t.Errorf("a long line passed on as %d writes", len(writes))
	}
	if got := w.lastLine(); got != "; stderr: "+long[:lastLineMax]+" (… last line: tail)" {
		t.Errorf("last line %s", got)
	}
}

// psql says ERROR: first, then DETAIL: and CONTEXT:: the message quotes
// the ERROR line, once, quotes and backslashes as they are, control bytes
// escaped.
func TestLineWriterQuotesTheError(t *testing.T) {
	for _, tc := range []struct{ stderr, want string }{
		{"ERROR:  relation \"hits\" does not exist\nLINE 1: COPY hits\nCONTEXT:  COPY hits, line 1: \"C:\\temp\"\n",
			`; stderr: ERROR:  relation "hits" does not exist`},
		{"psql:load.sql:3: ERROR:  syntax error\n", `; stderr: psql:load.sql:3: ERROR:  syntax error`},
		{"starting\nsome terror: none\nstopped\n", `; stderr: starting (… last line: stopped)`},
		{"bad \x1b[2Jbyte\xff\tend\n", `; stderr: bad \x1b[2Jbyte\xff\x09end`},
		{"only\n", `; stderr: only`},
		{"", ""},
	} {
		w := &lineWriter{w: io.Discard}
		w.Write([]byte(tc.stderr))
		w.finish()
		if got := w.lastLine(); got != tc.want {
			t.Errorf("stderr %q: %q, want %q", tc.stderr, got, tc.want)
		}
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func writes2(w *[]string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		*w = append(*w, string(p))
		return len(p), nil
	})
}

func TestHeldOutputSpills(t *testing.T) {
	var want bytes.Buffer
	h := &heldOutput{}
	for i := range 30000 {
		line := fmt.Appendf(nil, "line %d\n", i)
		want.Write(line)
		if _, err := h.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if h.file == nil || len(h.mem) > heldOutputMemory {
		t.Errorf("%d bytes held in memory, file %v", len(h.mem), h.file)
	}
	var got bytes.Buffer
	if _, err := h.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("wrote back %d bytes, want %d", got.Len(), want.Len())
	}
}

// syncBuffer is a buffer written by a run's copying goroutines.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	ready chan struct{} // closed once "ready\n" was written
	once  sync.Once
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{ready: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	if strings.Contains(s.b.String(), "ready\n") {
		s.once.Do(func() { close(s.ready) })
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestExecFailures(t *testing.T) {
	for _, tc := range []struct {
		role, want string
	}{
		{"fail", `exit status 4; stderr: helper: reading (… last line: helper: no space left on device)`},
		{"suicide", `killed by signal 9 (killed)`},
	} {
		t.Run(tc.role, func(t *testing.T) {
			s := newExec(t, helper(t, tc.role))
			err := s.Deliver(t.Context(), &batcher.Batch{Seq: 1, Attempt: 1})
			if err == nil || !strings.Contains(err.Error(), tc.want) || batcher.IsPermanent(err) {
				t.Errorf("error %v, want a retryable one with %q", err, tc.want)
			}
		})
	}
}

// A command that exits 0 without reading its input has delivered it.
func TestExecExitWithoutReading(t *testing.T) {
	s := newExec(t, helper(t, "exit0"))
	var recs []batcher.Record
	line := bytes.Repeat([]byte("x"), 1000)
	for range 1000 { // far more than a pipe holds
		recs = append(recs, batcher.Record{Data: line})
	}
	p := &batcher.Pipeline{Source: records(recs), Sink: s,
		Config: batcher.Config{Delim: '\n', MaxRecords: 1000, MaxBytes: 4 << 20}}
	st, err := p.Run(t.Context())
	if err != nil || st.Delivered != 1000 {
		t.Errorf("delivered %d, error %v", st.Delivered, err)
	}
}

func TestExecStdinAndOutput(t *testing.T) {
	for _, parallel := range []int{1, 3} {
		t.Run(fmt.Sprint("j", parallel), func(t *testing.T) {
			out := newSyncBuffer()
			cfg := helper(t, "cat")
			cfg.Stdout, cfg.Parallel, cfg.KeepOrder = out, parallel, true
			s := newExec(t, cfg)
			var recs []batcher.Record
			var want bytes.Buffer
			for i := range 50 {
				r := fmt.Appendf(nil, "record %d", i)
				recs = append(recs, batcher.Record{Data: r})
				want.Write(append(r, '\n'))
			}
			p := &batcher.Pipeline{Source: records(recs), Sink: s,
				Config: batcher.Config{Delim: '\n', MaxRecords: 7, Parallel: parallel}}
			if _, err := p.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			if out.String() != want.String() {
				t.Errorf("output\n%s\nwant\n%s", out, want.String())
			}
		})
	}
}

func TestExecTimeout(t *testing.T) {
	// The timeout runs from the start, and a child slow to start (under
	// -race, on a busy machine) may get SIGTERM before it ignores it. Only
	// a child that said it was ready, which it does once it ignores
	// SIGTERM, shows that SIGKILL came --kill-after later; until one does,
	// try again with twice the time.
	for timeout := 300 * time.Millisecond; ; timeout *= 2 {
		stderr := newSyncBuffer()
		cfg := helper(t, "ignore-term")
		cfg.Stderr = stderr
		cfg.Timeout, cfg.KillAfter = timeout, 50*time.Millisecond
		s := newExec(t, cfg)
		start := time.Now()
		err := s.Deliver(t.Context(), &batcher.Batch{Seq: 1, Attempt: 1})
		took := time.Since(start)
		if want := fmt.Sprintf("timed out after %v", timeout); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want %q", err, want)
		}
		select {
		case <-stderr.ready:
		default:
			t.Logf("the child was not ready within %v; again", timeout)
			continue
		}
		if took < timeout+cfg.KillAfter {
			t.Errorf("killed after %v: SIGTERM was ignored, so SIGKILL was due after %v", took, timeout+cfg.KillAfter)
		}
		return
	}
}

// With -j above 1, a batch whose output cannot be written is not
// delivered, and retrying it would not help.
func TestExecOutputNotWritten(t *testing.T) {
	cfg := helper(t, "cat")
	cfg.Parallel = 2
	cfg.Stdout = writerFunc(func(p []byte) (int, error) { return 0, syscall.EPIPE })
	s := newExec(t, cfg)
	for seq := int64(1); seq <= 2; seq++ {
		b := batchOf(t, '\n', []byte("x"))
		b.Seq = seq
		err := s.Deliver(t.Context(), b)
		if !errors.Is(err, syscall.EPIPE) || !batcher.IsPermanent(err) {
			t.Errorf("batch %d: error %v, want a permanent EPIPE", seq, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v, though every failure failed its batch", err)
	}
}

// Deliveries abandoned after the shutdown timeout get SIGTERM; one that
// then exits 0 did its work, and is delivered. After a second signal,
// SIGKILL at once.
func TestExecAbandoned(t *testing.T) {
	for _, tc := range []struct {
		cause   error
		gotTerm bool
	}{
		{batcher.ErrShutdownTimeout, true},
		{errors.New("second signal (interrupt)"), false},
	} {
		t.Run(tc.cause.Error(), func(t *testing.T) {
			stderr := newSyncBuffer()
			cfg := helper(t, "trap-term")
			cfg.Stderr = stderr
			s := newExec(t, cfg)
			ctx, cancel := context.WithCancelCause(t.Context())
			done := make(chan error)
			go func() { done <- s.Deliver(ctx, &batcher.Batch{Seq: 1, Attempt: 1}) }()
			<-stderr.ready
			cancel(tc.cause)
			err := <-done
			if tc.gotTerm && err != nil {
				t.Errorf("error %v, want none: the command exited 0", err)
			}
			if !tc.gotTerm && !errors.Is(err, tc.cause) {
				t.Errorf("error %v, want %v", err, tc.cause)
			}
			if got := strings.Contains(stderr.String(), "got SIGTERM"); got != tc.gotTerm {
				t.Errorf("child got SIGTERM: %v, want %v; stderr:\n%s", got, tc.gotTerm, stderr)
			}
		})
	}
}

// BenchmarkExec measures the cost of a run beyond the command's own: one
// batch of 100 short records per run, to true (which reads nothing) or cat.
func BenchmarkExec(b *testing.B) {
	var recs [][]byte
	for i := range 100 {
		recs = append(recs, fmt.Appendf(nil, "%d", i))
	}
	batch := batchOf(b, '\n', recs...)
	// The floor: the same command run bare, nothing around it.
	b.Run("bare", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, bc := range []struct {
		name string
		cfg  ExecConfig
	}{
		{"stdin", ExecConfig{Argv: []string{"true"}}},
		{"args", ExecConfig{Argv: []string{"true"}, Args: true}},
		{"stdin-j2", ExecConfig{Argv: []string{"true"}, Parallel: 2}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.cfg.Stdout, bc.cfg.Stderr = io.Discard, io.Discard
			s, err := NewExec(bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := s.Deliver(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
