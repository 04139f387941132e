package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestRoundTripMillionLines(t *testing.T) {
	var in bytes.Buffer
	for i := range 1_000_000 {
		fmt.Fprintf(&in, "line %d %s\n", i, strings.Repeat("x", i%50))
	}
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, bytes.NewReader(in.Bytes()), "-n", "1000", "file", out)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := readFile(t, out); got != in.String() {
		t.Fatalf("output differs from input (%d bytes vs %d)", len(got), in.Len())
	}
	if !strings.Contains(r.stderr, "1000000 records") || !strings.Contains(r.stderr, "in 1000 batches") {
		t.Errorf("summary: %s", r.stderr)
	}
}

func TestBytesPassThrough(t *testing.T) {
	tests := []struct {
		name, in, want string
		args           []string
	}{
		{"CRLF and invalid UTF-8", "a\r\n\xff\xfe\x00\n\xc3\x28\n", "a\r\n\xff\xfe\x00\n\xc3\x28\n", nil},
		{"no trailing newline", "a\nlast", "a\nlast\n", nil},
		{"NUL delimited", "a\nb\x00c d\x00", "a\nb\x00c d\x00", []string{"-0"}},
		{"other delimiter", "a,b,c,", "a,b,c,", []string{"-d", ","}},
		{"empty records", "\n\n\n", "\n\n\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append(append([]string{"-n", "2"}, tt.args...), "file", out)
			r := run(t, strings.NewReader(tt.in), args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := readFile(t, out); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFiftyMegabyteLine(t *testing.T) {
	line := strings.Repeat("0123456789", 5_000_000)
	in := "a\n" + line + "\nb\n"
	r := run(t, strings.NewReader(in), "-b", "1MiB", "file", "-")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.stdout != in {
		t.Fatalf("50 MB line changed: %d bytes out, %d in", len(r.stdout), len(in))
	}
	if !strings.Contains(r.stderr, "in 3 batches") {
		t.Errorf("the long line did not go alone: %s", r.stderr)
	}
}

func TestRecordOverLimitFails(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	in := "ok\n" + strings.Repeat("x", 2000) + "\nafter\n"
	r := run(t, strings.NewReader(in), "--max-record-bytes", "1KiB", "file", out)
	if r.code != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "record 2 at byte offset 3: record of 2000 bytes is larger than the record limit (1024 bytes)") ||
		!strings.Contains(r.stderr, "not delivered") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	if got := readFile(t, out); strings.Contains(got, "xxx") {
		t.Fatalf("the oversized record was written: %q", got[:20])
	}
}

func TestEmptyInputChangesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	os.WriteFile(out, []byte("kept\n"), 0o644)
	before, _ := os.Stat(out)
	r := run(t, strings.NewReader(""), "file", out)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	after, _ := os.Stat(out)
	if got := readFile(t, out); got != "kept\n" || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("file changed: %q", got)
	}
}

func TestUnwritablePathIsUsageError(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{dir, filepath.Join(dir, "no", "such", "dir", "out")} {
		r := run(t, strings.NewReader("a\n"), "file", path)
		if r.code != 2 || !strings.Contains(r.stderr, path) {
			t.Errorf("%s: exit %d: %s", path, r.code, r.stderr)
		}
	}
}

// TestFailedWriteIsCutBack fills a file up to a size limit mid-batch: the
// part of the batch that was written is cut off again, so the file holds
// whole batches only, and the batch goes to the dead letter.
func TestFailedWriteIsCutBack(t *testing.T) {
	dir := t.TempDir()
	out, dead := filepath.Join(dir, "out"), filepath.Join(dir, "dead")
	var in strings.Builder
	for i := range 25 {
		fmt.Fprintf(&in, "%099d\n", i)
	}
	// Batches of 1000 bytes: two fit under 2300, the third is cut short.
	argv := append(childCmd(t, "fsize"), "2300", bin, "-n", "10", "--retries", "1", "--backoff", "1ms",
		"--dead-letter", dead, "file", out)
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdin = strings.NewReader(in.String())
	var stderr bytes.Buffer
	c.Stderr = &stderr
	err := c.Run()
	keepOutput(stderr.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("%v, want exit 3:\n%s", err, stderr.String())
	}
	lines := strings.SplitAfter(in.String(), "\n")
	if got, want := readFile(t, out), strings.Join(lines[:20], ""); got != want {
		t.Fatalf("out holds %d bytes, want the first two batches (%d bytes)", len(got), len(want))
	}
	if got, want := readFile(t, dead), strings.Join(lines[20:], ""); got != want {
		t.Fatalf("dead letter holds %q, want %q", got, want)
	}
	if !strings.Contains(stderr.String(), "file too large") {
		t.Fatalf("the error is not reported:\n%s", stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-n", "0", "file", "-"},
		{"-b", "-1", "file", "-"},
		{"-b", "lots", "file", "-"},
		{"-j", "100000", "file", "-"},
		{"-t", "-1s", "file", "-"},
		{"-0", "-d", ",", "file", "-"},
		{"-d", "ab", "file", "-"},
		{"--no-such-flag", "file", "-"},
		{"file"},
		{"file", "a", "b"},
		{"file", "--per-batch", "{seq}", "x"},
		{"file", "--per-batch", "{nope}.txt"},
		{"nosuchsink"},
		{},
	} {
		r := run(t, strings.NewReader("a\n"), args...)
		if r.code != 2 || !strings.Contains(r.stderr, "batchpipe: ") {
			t.Errorf("%q: exit %d: %s", args, r.code, r.stderr)
		}
	}
}

func TestSIGTERMFlushesOpenBatch(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := start(t, "-v", "-n", "100", "-t", "1h", "file", out)
	p.write("a\nb\nc\n")
	p.waitFor("total=3")
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d, want 143; stderr:\n%s", code, p.stderr())
	}
	if got := readFile(t, out); got != "a\nb\nc\n" {
		t.Fatalf("file holds %q", got)
	}
	if !strings.Contains(p.stderr(), "reason=signal") {
		t.Errorf("batch not flushed for the signal:\n%s", p.stderr())
	}
}

func TestSIGINTExit130(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := start(t, "-v", "file", out)
	p.write("a\n")
	p.waitFor("total=1")
	p.signal(syscall.SIGINT)
	if code := p.wait(); code != 130 {
		t.Fatalf("exit %d, want 130; stderr:\n%s", code, p.stderr())
	}
	if got := readFile(t, out); got != "a\n" {
		t.Fatalf("file holds %q", got)
	}
}

func TestSIGUSR1Flushes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := start(t, "-v", "-n", "100", "-t", "1h", "file", out)
	p.write("a\nb\n")
	p.waitFor("total=2")
	p.signal(syscall.SIGUSR1)
	p.waitFor("reason=flush")
	if got := readFile(t, out); got != "a\nb\n" {
		t.Fatalf("file holds %q after SIGUSR1", got)
	}
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr())
	}
}

func TestLingerFlushesWhileInputIsOpen(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := start(t, "-v", "-n", "100", "-t", "50ms", "file", out)
	p.write("a\n")
	p.waitFor("reason=linger")
	if got := readFile(t, out); got != "a\n" {
		t.Fatalf("file holds %q", got)
	}
	p.stdin.Close()
	p.wait()
}

func TestSecondSignalAbandons(t *testing.T) {
	// stdout is a pipe nobody reads: the sink blocks once it is full.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := exec.Command(bin, "-v", "-n", "10", "--shutdown-timeout", "1h", "file", "-")
	c.Stdout = w
	p := startCmd(t, c)
	w.Close()
	line := strings.Repeat("x", 1000) + "\n"
	go p.stdin.Write([]byte(strings.Repeat(line, 200))) // more than the pipe holds
	p.waitFor("seq=6")                                  // 60 KB written: the next batch fills the 64 KiB pipe and blocks
	p.signal(syscall.SIGTERM)
	p.waitFor("again to abandon") // signals of one kind do not queue
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, p.stderr())
	}
	if !strings.Contains(p.stderr(), "records not delivered") || !strings.Contains(p.stderr(), "second signal") {
		t.Fatalf("stderr: %s", p.stderr())
	}
}

func TestPerBatchNeverShowsPartialFile(t *testing.T) {
	dir := t.TempDir()
	const perBatch = 20000
	var in bytes.Buffer
	for i := range 10 * perBatch {
		fmt.Fprintf(&in, "%0100d\n", i)
	}
	p := start(t, "-n", strconv.Itoa(perBatch), "-b", "100MB", "file", "--per-batch", filepath.Join(dir, "{seq}.txt"))
	go func() {
		p.stdin.Write(in.Bytes())
		p.stdin.Close()
	}()
	seen := map[string]bool{}
	check := func() {
		names, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
		for _, name := range names {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != perBatch*101 {
				t.Fatalf("%s seen with %d bytes", name, len(b))
			}
			seen[name] = true
		}
	}
	for {
		select {
		case <-p.waited:
			check()
			if p.code != 0 || len(seen) != 10 {
				t.Fatalf("exit %d, %d files", p.code, len(seen))
			}
			return
		default:
			check()
		}
	}
}

func TestSymlinkedOutputRefused(t *testing.T) {
	dir := t.TempDir()
	target, link := filepath.Join(dir, "target"), filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"file", link}, {"--dead-letter", link, "file", "-"}} {
		r := run(t, strings.NewReader("a\n"), args...)
		if r.code != 2 || !strings.Contains(r.stderr, link+" is a symbolic link") {
			t.Errorf("%q: exit %d: %s", args, r.code, r.stderr)
		}
	}
	if r := run(t, strings.NewReader("a\n"), "--follow-symlinks", "file", link); r.code != 0 || readFile(t, target) != "a\n" {
		t.Fatalf("--follow-symlinks: exit %d: %s", r.code, r.stderr)
	}
}

func TestFileFormatNDJSON(t *testing.T) {
	dir := t.TempDir()
	out, dead := filepath.Join(dir, "out"), filepath.Join(dir, "dead")
	r := run(t, strings.NewReader("{\"a\":1}\nnot json\n[1,\n2]\n"), "--dead-letter", dead, "file", "--format", "ndjson", out)
	if r.code != 3 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := readFile(t, out); got != "{\"a\":1}\n" {
		t.Errorf("out %q", got)
	}
	if got := readFile(t, dead); got != "not json\n[1,\n2]\n" {
		t.Errorf("dead letter %q", got)
	}
}

// Batches are appended in input order at any -j, to a file and to stdout.
func TestFileAppendKeepsInputOrder(t *testing.T) {
	in := numbered(100000, "record %06d")
	for _, j := range []string{"4", "16"} {
		t.Run("file j="+j, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			r := run(t, strings.NewReader(in), "-n", "3", "-j", j, "file", out)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := readFile(t, out); got != in {
				t.Fatalf("output is not the input: %s", firstDiff(got, in))
			}
		})
		t.Run("stdout j="+j, func(t *testing.T) {
			r := run(t, strings.NewReader(in), "-n", "3", "-j", j, "file", "-")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if r.stdout != in {
				t.Fatalf("output is not the input: %s", firstDiff(r.stdout, in))
			}
		})
	}
}
