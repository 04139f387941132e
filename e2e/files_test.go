package e2e

// Helpers for what batchpipe reads and writes: input lines, output files,
// the named pipe a test reads at its own pace (fifo), and the files cut at
// Kafka offsets by --exactly-once.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readFile returns the file's content, failing the test if it cannot.
func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fileLines(t *testing.T, name string) []string {
	t.Helper()
	s := readFile(t, name)
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("%s ends without a newline", name)
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// A fifo is a named pipe that batchpipe writes to and the test reads at its
// own pace. The test holds it open for writing too, so that opening it
// never blocks and a sentinel written after batchpipe exits marks the end.
type fifo struct {
	t    *testing.T
	path string
	f    *os.File
	r    *bufio.Reader
}

const sentinel = "\x00end of test fifo"

func newFIFO(t *testing.T) *fifo {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fifo{t: t, path: path, f: f, r: bufio.NewReader(f)}
}

// read returns the next n lines.
func (f *fifo) read(n int) []string {
	f.t.Helper()
	f.f.SetReadDeadline(time.Now().Add(time.Minute))
	lines := make([]string, 0, n)
	for len(lines) < n {
		l, err := f.r.ReadString('\n')
		if err != nil {
			f.t.Fatalf("read fifo after %d lines: %v", len(lines), err)
		}
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	return lines
}

// rest returns every whole line left, once batchpipe has exited. A line cut
// short by a kill is not a record delivered and is dropped.
func (f *fifo) rest() []string {
	f.t.Helper()
	// The pipe may be full: write while reading.
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(f.f, sentinel+"\n")
		werr <- err
	}()
	lines, err := f.untilSentinel()
	if err := errors.Join(err, <-werr); err != nil {
		f.t.Fatal(err)
	}
	return lines
}

// readWhile reads every line until p exits, then the rest.
func (f *fifo) readWhile(p *proc) []string {
	f.t.Helper()
	var lines []string
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		lines, err = f.untilSentinel()
	}()
	p.wait()
	if _, werr := io.WriteString(f.f, sentinel+"\n"); werr != nil {
		f.t.Fatal(werr)
	}
	<-done
	if err != nil {
		f.t.Fatal(err)
	}
	return lines
}

func (f *fifo) untilSentinel() ([]string, error) {
	f.f.SetReadDeadline(time.Now().Add(time.Minute))
	var lines []string
	for {
		l, err := f.r.ReadString('\n')
		if err != nil {
			return lines, fmt.Errorf("read fifo after %d lines: %w", len(lines), err)
		}
		l = strings.TrimSuffix(l, "\n")
		if strings.Contains(l, sentinel) {
			return lines, nil
		}
		lines = append(lines, l)
	}
}

// lines returns n lines of format applied to 0 … n-1.
func lines(n int, format string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format+"\n", i)
	}
	return b.String()
}

// sortedLines splits s into its lines, sorted.
func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if s == "" {
		l = nil
	}
	slices.Sort(l)
	return l
}

// numbered returns n lines of format applied to 1 … n.
func numbered(n int, format string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, format+"\n", i)
	}
	return b.String()
}

// firstDiff says where got first differs from want, by line.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d is %q, want %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}

// offsetFile is one per-batch file named FIRST-LAST.
type offsetFile struct {
	first, last int64
	lines       []string
}

// offsetFiles reads out/PARTITION/FIRST-LAST files, leaving out temporary
// files (they start with a dot: a kill may leave one behind).
func offsetFiles(t *testing.T, out string) map[int32][]offsetFile {
	t.Helper()
	files := map[int32][]offsetFile{}
	dirs, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			t.Fatalf("directory %s is not a partition", d.Name())
		}
		entries, err := os.ReadDir(filepath.Join(out, d.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			f, l, ok := strings.Cut(e.Name(), "-")
			first, err1 := strconv.ParseInt(f, 10, 64)
			last, err2 := strconv.ParseInt(l, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				t.Fatalf("file %s/%s is not named FIRST-LAST", d.Name(), e.Name())
			}
			files[int32(p)] = append(files[int32(p)], offsetFile{first, last, fileLines(t, filepath.Join(out, d.Name(), e.Name()))})
		}
	}
	return files
}

// checkOffsetFiles checks that each partition's files tile offsets 0 to
// n-1 and hold exactly their records, in order: every record in exactly one
// final file.
func checkOffsetFiles(t *testing.T, files map[int32][]offsetFile, n int64) int {
	t.Helper()
	return checkOffsetFilesOf(t, files, parts4, n)
}

// checkOffsetFilesOf is checkOffsetFiles for the partitions parts.
func checkOffsetFilesOf(t *testing.T, files map[int32][]offsetFile, parts []int32, n int64) int {
	t.Helper()
	count := 0
	for _, part := range parts {
		fs := files[part]
		slices.SortFunc(fs, func(a, b offsetFile) int { return int(a.first - b.first) })
		next := int64(0)
		for _, f := range fs {
			if f.first != next {
				t.Fatalf("partition %d: file %d-%d, want one starting at %d", part, f.first, f.last, next)
			}
			if int64(len(f.lines)) != f.last-f.first+1 {
				t.Fatalf("partition %d: file %d-%d holds %d records", part, f.first, f.last, len(f.lines))
			}
			for i, l := range f.lines {
				p, off := parseValue(t, l)
				if p != part || off != f.first+int64(i) {
					t.Fatalf("partition %d: file %d-%d: line %d is record %d/%d", part, f.first, f.last, i, p, off)
				}
			}
			next = f.last + 1
		}
		if next != n {
			t.Fatalf("partition %d: files end at %d, want %d", part, next, n)
		}
		count += len(fs)
	}
	return count
}
