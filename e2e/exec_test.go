//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	for role, f := range execChildren {
		children[role] = f
	}
}

// execChildren are the roles the exec sink's tests run.
var execChildren = map[string]func(args []string) int{
	// report prints, on stdout and stderr, what the run was given.
	"report": func([]string) int {
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 1
		}
		line := fmt.Sprintf("seq=%s records=%s bytes=%s reason=%s attempt=%s stdin=%q\n",
			os.Getenv("BATCHPIPE_SEQ"), os.Getenv("BATCHPIPE_RECORDS"), os.Getenv("BATCHPIPE_BYTES"),
			os.Getenv("BATCHPIPE_REASON"), os.Getenv("BATCHPIPE_ATTEMPT"), in)
		os.Stdout.WriteString(line)
		os.Stderr.WriteString("report " + line)
		return 0
	},
	// flaky SEED fails 30% of attempts, by a hash of SEED, the batch and
	// the attempt, so that a run of the test is repeatable; otherwise it
	// copies stdin to stdout.
	"flaky": func(args []string) int {
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 1
		}
		h := fnv.New64a()
		fmt.Fprintf(h, "%s:%s:%s", args[0], os.Getenv("BATCHPIPE_SEQ"), os.Getenv("BATCHPIPE_ATTEMPT"))
		if h.Sum64()%100 < 30 {
			fmt.Fprintf(os.Stderr, "flaky: failing batch %s\n", os.Getenv("BATCHPIPE_SEQ"))
			return 1
		}
		os.Stdout.Write(in)
		return 0
	},
	// gate LOCKFILE says it started, waits for a shared lock on LOCKFILE
	// (held exclusively by the test), then copies stdin to stdout.
	"gate": func(args []string) int {
		fmt.Fprintf(os.Stderr, "gate: started batch %s\n", os.Getenv("BATCHPIPE_SEQ"))
		f, err := os.Open(args[0])
		if err != nil {
			return 1
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
			return 1
		}
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			return 1
		}
		return 0
	},
	// hang starts a grandchild that ignores SIGTERM, and both hang.
	"hang": func([]string) int {
		if startStraggler() != nil {
			return 1
		}
		fmt.Fprintf(os.Stderr, "hang: pid=%d\n", os.Getpid())
		<-time.NewTimer(time.Hour).C // until killed
		return 0
	},
	// background starts a grandchild that holds its stderr and hangs, then
	// copies stdin to stdout and exits 0.
	"background": func([]string) int {
		if startStraggler() != nil {
			return 1
		}
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			return 1
		}
		return 0
	},
	"ignore-term": func([]string) int {
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintf(os.Stderr, "ignore-term: pid=%d\n", os.Getpid())
		<-time.NewTimer(time.Hour).C // until killed
		return 0
	},
	// reverse copies stdin to stdout, later the earlier its batch is among
	// each four, so that runs in parallel finish out of order.
	"reverse": func([]string) int {
		seq, _ := strconv.Atoi(os.Getenv("BATCHPIPE_SEQ"))
		<-time.NewTimer(time.Duration(4-(seq-1)%4) * 15 * time.Millisecond).C // work that takes a while
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			return 1
		}
		return 0
	},
	// spew writes spewLines lines to stdout and a tenth as many to stderr,
	// each in two writes, to tempt interleaving.
	"spew": func([]string) int {
		seq := os.Getenv("BATCHPIPE_SEQ")
		for i := range spewLines {
			fmt.Fprintf(os.Stdout, "out seq=%s i=%d ", seq, i)
			os.Stdout.WriteString(spewTail)
			if i%10 == 0 {
				fmt.Fprintf(os.Stderr, "err seq=%s i=%d ", seq, i)
				os.Stderr.WriteString(spewTail)
			}
		}
		return 0
	},
	// jitter OUT takes a random while, fails one attempt in five, and
	// otherwise appends stdin to OUT in one write, and copies it to stdout.
	"jitter": func(args []string) int {
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 1
		}
		<-time.NewTimer(time.Duration(rand.IntN(20)) * time.Millisecond).C // work that takes a while
		if rand.IntN(5) == 0 {
			return 1
		}
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return 1
		}
		defer f.Close()
		if _, err := f.Write(in); err != nil {
			return 1
		}
		os.Stdout.Write(in)
		return 0
	},
	// exit0 exits 0 without reading stdin.
	"exit0": func([]string) int { return 0 },
	// fail says why on stderr and exits 3.
	"fail": func([]string) int {
		io.Copy(io.Discard, os.Stdin)
		os.Stderr.WriteString("fail: starting\nfail: disk full\n")
		return 3
	},
	// args prints its arguments, one line per run.
	"args": func(args []string) int {
		fmt.Printf("seq=%s records=%s args=%q\n", os.Getenv("BATCHPIPE_SEQ"), os.Getenv("BATCHPIPE_RECORDS"), args)
		return 0
	},
	// countargs prints how many arguments it got and their bytes.
	"countargs": func(args []string) int {
		n := 0
		for _, a := range args {
			n += len(a)
		}
		fmt.Printf("%d %d\n", len(args), n)
		return 0
	},
}

const spewLines = 4000

var spewTail = strings.Repeat("x", 60) + "\n"

// execArgs is batchpipe's command line for flags, then exec, then the child
// in role, then the child's arguments.
// startStraggler starts a grandchild that ignores SIGTERM and hangs,
// holding the stderr pipe batchpipe reads (not the test's stdout).
func startStraggler() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	gc := exec.Command(self)
	gc.Env = append(os.Environ(), "BATCHPIPE_TEST_CHILD=ignore-term")
	gc.Stderr = os.Stderr
	return gc.Start()
}

func TestExecBatchBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		in    string
		want  string
	}{
		{"size", []string{"-n", "3", "-t", "0"}, "1\n2\n3\n4\n5\n6\n7\n",
			`seq=1 records=3 bytes=6 reason=size attempt=1 stdin="1\n2\n3\n"
seq=2 records=3 bytes=6 reason=size attempt=1 stdin="4\n5\n6\n"
seq=3 records=1 bytes=2 reason=eof attempt=1 stdin="7\n"
`},
		{"bytes", []string{"-n", "100", "-b", "10", "-t", "0"}, "aaaa\nbbbb\ncccc\n",
			`seq=1 records=2 bytes=10 reason=bytes attempt=1 stdin="aaaa\nbbbb\n"
seq=2 records=1 bytes=5 reason=eof attempt=1 stdin="cccc\n"
`},
		{"nul", []string{"-0", "-n", "2", "-t", "0"}, "a\nb\x00c\x00d\x00",
			`seq=1 records=2 bytes=6 reason=size attempt=1 stdin="a\nb\x00c\x00"
seq=2 records=1 bytes=2 reason=eof attempt=1 stdin="d\x00"
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, strings.NewReader(tc.in), execArgs(t, append(tc.flags, "exec"), "report")...)
			if r.code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
			}
			if r.stdout != tc.want {
				t.Errorf("runs saw:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
		})
	}
	t.Run("linger", func(t *testing.T) {
		p := start(t, execArgs(t, []string{"-n", "100", "-t", "100ms", "exec"}, "report")...)
		p.write("a\nb\n")
		got := p.waitFor("report seq=1")
		if want := `report seq=1 records=2 bytes=4 reason=linger attempt=1 stdin="a\nb\n"`; got != want {
			t.Errorf("first run saw %s, want %s", got, want)
		}
		p.write("c\n")
		p.stdin.Close()
		if code := p.wait(); code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, p.stderr())
		}
		if !strings.Contains(p.stdout.String(), `seq=2 records=1 bytes=2`) {
			t.Errorf("second batch not run: %s", p.stdout.String())
		}
	})
}

func TestExecRetriesDeliverEverything(t *testing.T) {
	in := lines(150, "record %03d")
	r := run(t, strings.NewReader(in), execArgs(t,
		[]string{"-n", "7", "-j", "3", "--retries", "10", "--backoff", "1ms", "--max-backoff", "4ms", "exec"}, "flaky", "seed-1")...)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if got, want := sortedLines(r.stdout), sortedLines(in); !slices.Equal(got, want) {
		t.Fatalf("delivered %d records, want the %d read", len(got), len(want))
	}
	n := summary(t, r.stderr)
	if n[0] != 150 || n[1] != 150 || n[4] == 0 {
		t.Errorf("summary: %v; want 150 read, 150 delivered, some retries", n)
	}
}

func TestExecDeadLetterReplay(t *testing.T) {
	in := lines(150, "record %03d")
	dl := filepath.Join(t.TempDir(), "failed.txt")
	r := run(t, strings.NewReader(in), execArgs(t,
		[]string{"-n", "7", "-j", "3", "--retries", "0", "--dead-letter", dl, "exec"}, "flaky", "seed-2")...)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", r.code, r.stderr)
	}
	failed := readFile(t, dl)
	got := append(sortedLines(r.stdout), sortedLines(failed)...)
	slices.Sort(got)
	if !slices.Equal(got, sortedLines(in)) {
		t.Fatalf("delivered (%d) and dead-lettered (%d) records are not the input", len(sortedLines(r.stdout)), len(sortedLines(failed)))
	}
	n := summary(t, r.stderr)
	if n[1] != len(sortedLines(r.stdout)) || n[2] != len(sortedLines(failed)) || n[2] == 0 || n[3] != 0 {
		t.Errorf("summary %v does not match %d delivered, %d dead-lettered", n, len(sortedLines(r.stdout)), len(sortedLines(failed)))
	}

	// Replay what failed.
	dl2 := filepath.Join(t.TempDir(), "failed2.txt")
	replay := run(t, strings.NewReader(failed), execArgs(t, []string{"--dead-letter", dl2, "exec"}, "cat")...)
	if replay.code != 0 {
		t.Fatalf("replay: exit %d; stderr:\n%s", replay.code, replay.stderr)
	}
	got = append(sortedLines(r.stdout), sortedLines(replay.stdout)...)
	slices.Sort(got)
	if !slices.Equal(got, sortedLines(in)) {
		t.Errorf("the run and its replay did not deliver the input")
	}
}

func TestExecFailureMessage(t *testing.T) {
	r := run(t, strings.NewReader("a\nb\nc\n"), execArgs(t, []string{"-n", "2", "--retries", "0", "exec"}, "fail")...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	// The pipeline names the batch, the sink the command and its end.
	want := regexp.MustCompile(`batchpipe: batch 1 \(.*\): exec sink: env: exit status 3; stderr: fail: starting \(… last line: fail: disk full\)`)
	if !want.MatchString(r.stderr) {
		t.Errorf("stderr lacks %s:\n%s", want, r.stderr)
	}
}

// A command that explains itself over several lines, as psql does
// (ERROR:, then LINE and CONTEXT:), is quoted by its ERROR line, escaped
// once at most: as it is in the error, as a quoted value in a log line.
func TestExecFailureQuotesErrorLine(t *testing.T) {
	script := `printf '%s\n' 'ERROR:  invalid input syntax for type json' 'DETAIL:  Token "C" is invalid.' 'CONTEXT:  COPY hits, line 1, column doc: "C:\temp"' >&2; exit 1`
	r := run(t, strings.NewReader("C:\\temp\n"), "--retries", "0", "exec", "--", "sh", "-c", script)
	want := `: exec sink: sh: exit status 1; stderr: ERROR:  invalid input syntax for type json` + "\n"
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, want 1 and %q; stderr:\n%s", r.code, want, r.stderr)
	}
	dl := filepath.Join(t.TempDir(), "failed")
	r = run(t, strings.NewReader("C:\\temp\n"), "--retries", "0", "--dead-letter", dl, "exec", "--", "sh", "-c", script)
	want = `reason="exec sink: sh: exit status 1; stderr: ERROR:  invalid input syntax for type json"`
	if r.code != 3 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, want 3 and %q; stderr:\n%s", r.code, want, r.stderr)
	}
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	p := start(t, execArgs(t, []string{"--retries", "0", "exec", "--timeout", "2s", "--kill-after", "200ms"}, "hang")...)
	p.write("x\n")
	p.stdin.Close()
	var pidfds []int
	for _, who := range []string{"hang: pid=", "ignore-term: pid="} {
		line := p.waitFor(who)
		pid, err := strconv.Atoi(line[strings.Index(line, "=")+1:])
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		fd, err := pidfdOpen(pid)
		if err != nil {
			t.Fatalf("pidfd_open %d: %v", pid, err)
		}
		t.Cleanup(func() {
			// Should batchpipe have left it behind, do not leave it too.
			pidfdKill(fd)
			syscall.Close(fd)
		})
		pidfds = append(pidfds, fd)
	}
	if code := p.wait(); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, p.stderr())
	}
	if !strings.Contains(p.stderr(), "timed out after 2s") {
		t.Errorf("no timeout in the error:\n%s", p.stderr())
	}
	for i, fd := range pidfds {
		// SIGKILL was sent before batchpipe exited; death follows at once.
		if !exited(t, fd, 10*time.Second) {
			t.Errorf("%s still running after batchpipe exited", []string{"child", "grandchild"}[i])
		}
	}
}

// A command that exits 0 leaving a process in the background that holds
// its stderr has delivered its batch, once --kill-after has passed; the
// process is killed, not left to outlive batchpipe.
func TestExecBackgroundKilled(t *testing.T) {
	p := start(t, execArgs(t, []string{"-n", "2", "exec", "--kill-after", "200ms"}, "background")...)
	p.write("a\nb\n")
	p.stdin.Close()
	line := p.waitFor("ignore-term: pid=")
	pid, err := strconv.Atoi(line[strings.Index(line, "=")+1:])
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	fd, err := pidfdOpen(pid)
	if err == syscall.ESRCH {
		fd = -1 // gone already
	} else if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, p.stderr())
	}
	if got := p.stdout.String(); got != "a\nb\n" {
		t.Errorf("stdout %q", got)
	}
	if fd >= 0 {
		defer syscall.Close(fd)
		defer pidfdKill(fd) // should batchpipe have left it behind
		// SIGKILL was sent before batchpipe exited; death follows at once.
		if !exited(t, fd, 10*time.Second) {
			t.Error("the background process outlived batchpipe")
		}
	}
}

// With -j above 1, output that cannot be written to stdout fails its
// batch, and batchpipe says so rather than counting the batch as
// delivered: a full disk exits 1, a closed pipe 141 with one line, as cat
// (TestBrokenPipeStopsAtOnce).
func TestExecStdoutFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  []string
		stdout func(t *testing.T) *os.File
	}{
		{"closed pipe", nil, closedPipe},
		{"full disk", nil, devFull},
		{"closed pipe keep order", []string{"--keep-order"}, closedPipe},
		{"full disk keep order", []string{"--keep-order"}, devFull},
	} {
		if strings.HasPrefix(tc.name, "closed pipe") {
			t.Run(tc.name, func(t *testing.T) {
				flags := append([]string{"-n", "10", "-j", "2", "exec"}, tc.flags...)
				c := exec.Command(bin, execArgs(t, flags, "cat")...)
				c.Stdout = tc.stdout(t)
				p := startCmd(t, c)
				c.Stdout.(*os.File).Close()
				p.write(lines(100, "%d"))
				p.stdin.Close()
				if code := p.wait(); code != 141 {
					t.Fatalf("exit %d, want 141; stderr:\n%s", code, p.stderr())
				}
				if !regexp.MustCompile(`^batchpipe: stdout: broken pipe, \d+ of 100 records not delivered$`).MatchString(p.stderr()) {
					t.Errorf("stderr:\n%s", p.stderr())
				}
			})
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			flags := append([]string{"-n", "10", "-j", "2", "exec"}, tc.flags...)
			c := exec.Command(bin, execArgs(t, flags, "cat")...)
			c.Stdout = tc.stdout(t)
			p := startCmd(t, c)
			c.Stdout.(*os.File).Close() // batchpipe has its own copy
			p.write(lines(100, "%d"))
			p.stdin.Close()
			if code := p.wait(); code != 1 {
				// -1: killed by a signal.
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, p.stderr())
			}
			n := summary(t, p.stderr())
			if want := fmt.Sprintf("batchpipe: %d of 100 records not delivered", n[3]); n[3] == 0 || !strings.Contains(p.stderr(), want) {
				t.Errorf("want %q; stderr:\n%s", want, p.stderr())
			}
			if !strings.Contains(p.stderr(), "not written") {
				t.Errorf("no output not written in the errors:\n%s", p.stderr())
			}
		})
	}
}

func closedPipe(t *testing.T) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	return w
}

func devFull(t *testing.T) *os.File {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	return f
}

func TestExecKeepOrder(t *testing.T) {
	in := lines(24, "record %02d")
	r := run(t, strings.NewReader(in), execArgs(t, []string{"-n", "1", "-j", "4", "exec", "--keep-order"}, "reverse")...)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != in {
		t.Errorf("output out of order:\n%s", r.stdout)
	}
}

// The case: two keys taking turns, a batch per record, runs that
// take a random while and fail now and then. Each key's records reach the
// file in input order, at any -j; with --keep-order, stdout is the input.
func TestExecPartitionByKeepsOrder(t *testing.T) {
	keys := []string{"a", "b"}
	const n = 40
	in := keyTurnsInput(keys, n)
	for _, j := range []string{"4", "16"} {
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprintf("j=%s keep-order=%v", j, keep), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out")
				flags := []string{"--partition-by", "{field:1}", "--field-delimiter", " ",
					"--max-open-keys", "1", "-j", j, "--retries", "20", "--backoff", "1ms", "--max-backoff", "5ms", "exec"}
				if keep {
					flags = append(flags, "--keep-order")
				}
				r := run(t, strings.NewReader(in), execArgs(t, flags, "jitter", out)...)
				if r.code != 0 {
					t.Fatalf("exit %d:\n%s", r.code, r.stderr)
				}
				checkKeyTurns(t, readFile(t, out), keys, n)
				if keep && r.stdout != in {
					t.Fatalf("stdout with --keep-order is not the input: %s", firstDiff(r.stdout, in))
				}
			})
		}
	}
}

func TestExecParallelOutputKeptTogether(t *testing.T) {
	const batches = 6
	r := run(t, strings.NewReader(lines(batches, "%d")), execArgs(t, []string{"-n", "1", "-j", "4", "exec"}, "spew")...)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	// Every run's stdout is one block of whole lines, in the order written.
	lineRe := regexp.MustCompile(`^out seq=(\d+) i=(\d+) ` + strings.TrimSuffix(spewTail, "\n") + `$`)
	seen := map[string]bool{}
	cur, next := "", 0
	for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		m := lineRe.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("mangled stdout line %.100q", l)
		}
		if m[1] != cur {
			if next != 0 && next != spewLines {
				t.Fatalf("run %s's output cut off after %d lines", cur, next)
			}
			if seen[m[1]] {
				t.Fatalf("run %s's output split in pieces", m[1])
			}
			seen[m[1]], cur, next = true, m[1], 0
		}
		if m[2] != strconv.Itoa(next) {
			t.Fatalf("run %s: line %s where %d was due", cur, m[2], next)
		}
		next++
	}
	if len(seen) != batches || next != spewLines {
		t.Fatalf("output of %d runs, the last with %d lines; want %d runs of %d", len(seen), next, batches, spewLines)
	}
	errRe := regexp.MustCompile(`^err seq=\d+ i=\d+ ` + strings.TrimSuffix(spewTail, "\n") + `$`)
	n := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "batchpipe:") || l == "" {
			continue
		}
		if !errRe.MatchString(l) {
			t.Fatalf("mangled stderr line %.100q", l)
		}
		n++
	}
	if n != batches*spewLines/10 {
		t.Errorf("%d stderr lines, want %d", n, batches*spewLines/10)
	}
}

func TestExecCommandNotFound(t *testing.T) {
	in, err := os.CreateTemp(t.TempDir(), "in")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := in.WriteString("a\nb\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	// The file's offset is shared with batchpipe: any read would move it.
	r := run(t, in, "exec", "--", "batchpipe-no-such-command", "x")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, `cannot run "batchpipe-no-such-command"`) {
		t.Errorf("stderr does not name the command:\n%s", r.stderr)
	}
	if off, err := in.Seek(0, io.SeekCurrent); err != nil || off != 0 {
		t.Errorf("stdin read up to offset %d (%v) before the error", off, err)
	}
}

func TestExecSIGTERMLetsRunsFinish(t *testing.T) {
	gate, open := shutGate(t)
	p := start(t, execArgs(t, []string{"-n", "2", "-j", "2", "exec"}, "gate", gate)...)
	p.write("a\nb\nc\nd\n")
	p.waitFor("gate: started batch 1")
	p.waitFor("gate: started batch 2")
	p.signal(syscall.SIGTERM)
	p.waitFor("delivering what was read")
	// Both commands are still waiting at the gate: let them through.
	open()
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d, want 143; stderr:\n%s", code, p.stderr())
	}
	if got := sortedLines(p.stdout.String()); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("delivered %q", got)
	}
}

func TestExecShutdownTimeoutStopsRuns(t *testing.T) {
	gate, _ := shutGate(t)
	p := start(t, execArgs(t, []string{"-n", "2", "--shutdown-timeout", "200ms", "exec"}, "gate", gate)...)
	p.write("a\nb\n")
	p.waitFor("gate: started batch 1")
	p.signal(syscall.SIGTERM)
	// The gate stays shut: the run is stopped once the drain times out.
	if code := p.wait(); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, p.stderr())
	}
	for _, want := range []string{"2 of 2 records not delivered", "shutdown timeout passed"} {
		if !strings.Contains(p.stderr(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, p.stderr())
		}
	}
}

func TestExecChildExitsWithoutReading(t *testing.T) {
	// Far more than a pipe holds, so writing it meets a closed pipe.
	in := lines(100000, "record %06d")
	r := run(t, strings.NewReader(in), execArgs(t, []string{"-n", "1000000", "-b", "8MiB", "--retries", "0", "exec"}, "exit0")...)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if n := summary(t, r.stderr); n[1] != 100000 {
		t.Errorf("summary %v: want 100000 delivered", n)
	}
}

func TestExecArgs(t *testing.T) {
	t.Run("appended", func(t *testing.T) {
		r := run(t, strings.NewReader("a\nb c\n\nd\n"), execArgs(t, []string{"-n", "3", "exec", "--args"}, "args", "first")...)
		want := "seq=1 records=3 args=[\"first\" \"a\" \"b c\" \"\"]\nseq=2 records=1 args=[\"first\" \"d\"]\n"
		if r.code != 0 || r.stdout != want {
			t.Errorf("exit %d, output\n%s\nwant\n%s\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
		}
	})
	t.Run("placeholder", func(t *testing.T) {
		r := run(t, strings.NewReader("1\n2\n"), execArgs(t, []string{"exec", "--args"}, "args", "-x", "<{}>", "end")...)
		want := "seq=1 records=2 args=[\"-x\" \"<1>\" \"<2>\" \"end\"]\n"
		if r.code != 0 || r.stdout != want {
			t.Errorf("exit %d, output\n%s\nwant\n%s\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		dl := filepath.Join(t.TempDir(), "failed")
		long := strings.Repeat("y", 200<<10)
		in := "a\nb\x00c\n" + long + "\nd\n"
		r := run(t, strings.NewReader(in), execArgs(t, []string{"-n", "10", "--dead-letter", dl, "exec", "--args"}, "args")...)
		if r.code != 3 {
			t.Fatalf("exit %d, want 3; stderr:\n%s", r.code, r.stderr)
		}
		if want := "seq=1 records=2 args=[\"a\" \"d\"]\n"; r.stdout != want {
			t.Errorf("output %s, want %s", r.stdout, want)
		}
		if got := readFile(t, dl); got != "b\x00c\n"+long+"\n" {
			t.Errorf("dead letter holds %.40q…", got)
		}
		if want := "NUL byte"; !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%.2000s", want, r.stderr)
		}
	})
	t.Run("cut to the system limit", func(t *testing.T) {
		// 8 MB of arguments: more than any command line takes.
		in := lines(8000, "%01000d")
		r := run(t, strings.NewReader(in), execArgs(t, []string{"-n", "100000", "-b", "64MiB", "exec", "--args"}, "countargs")...)
		if r.code != 0 {
			t.Fatalf("exit %d; stderr:\n%.2000s", r.code, r.stderr)
		}
		runs, args := 0, 0
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var n, size int
			if _, err := fmt.Sscan(l, &n, &size); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			runs++
			args += n
		}
		if args != 8000 || runs < 2 {
			t.Errorf("%d arguments in %d runs, want 8000 in several", args, runs)
		}
	})
}

// The examples in exec --help work when pasted into a shell.
func TestExecHelpExamplesWork(t *testing.T) {
	help := run(t, nil, "exec", "--help").stdout
	_, examples, ok := strings.Cut(help, "Examples:\n")
	if !ok {
		t.Fatalf("no examples in:\n%s", help)
	}
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "batchpipe")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"wc -l":        "3\n3\n3\n1\n",
		"files:":       "files: a b\nfiles: c d\nfiles: e\n",
		"echo \"batch": "batch 1: 2 records (size)\nbatch 2: 2 records (size)\nbatch 3: 1 records (eof)\n",
	}
	var sums strings.Builder
	for i := range 10 {
		for j := 1; j <= 10; j++ {
			if j > 1 {
				sums.WriteByte('+')
			}
			fmt.Fprint(&sums, i*10+j)
		}
		sums.WriteByte('\n')
	}
	want["paste"] = sums.String()
	n := 0
	for line := range strings.SplitSeq(examples, "\n") {
		if line != "" && !strings.HasPrefix(line, "  ") {
			break // the flags
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		c := exec.Command("sh", "-c", line)
		c.Dir = dir
		c.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := c.ProcessState.ExitCode()
		wantCode := 0
		if strings.Contains(line, "--dead-letter") {
			wantCode = 3
		}
		if code != wantCode {
			t.Errorf("%s: exit %d (%v), want %d; stderr:\n%s", line, code, err, wantCode, errb.String())
			continue
		}
		for key, w := range want {
			if strings.Contains(line, key) && out.String() != w {
				t.Errorf("%s: output\n%s\nwant\n%s", line, out.String(), w)
			}
		}
	}
	if got := readFile(t, filepath.Join(dir, "failed.txt")); got != "3\n4\n" {
		t.Errorf("failed.txt holds %q, want batch 2's records", got)
	}
	if n < 3 || n > 5 {
		t.Errorf("%d examples, want 3 to 5", n)
	}
}

func TestExecFormatJSON(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "dead")
	r := run(t, strings.NewReader("1\nnope\n{\"a\":2}\n"), append([]string{"-n", "10", "--dead-letter", dead, "exec", "--format", "json", "--"}, childCmd(t, "cat")...)...)
	if r.code != 3 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.stdout != "[1,{\"a\":2}]\n" {
		t.Errorf("child read %q", r.stdout)
	}
	if got := readFile(t, dead); got != "nope\n" {
		t.Errorf("dead letter %q", got)
	}
}
