//go:build linux

package e2e

// The cases of "signals, pipes and children": what a stop by signal leaves
// behind in the input, the output and the process table.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSIGTERMLeavesUnreadInputInThePipe stops batchpipe while its read of
// stdin waits on an empty pipe, and writes a record during the drain. The
// record was never returned by a read, so it must still be in the pipe for
// the next reader (`{ batchpipe …; cat; }`), not swallowed by a read that
// completed during the drain.
func TestSIGTERMLeavesUnreadInputInThePipe(t *testing.T) {
	gate, open := shutGate(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	c := exec.Command(bin, execArgs(t, []string{"-v", "-n", "1000", "-t", "0", "exec"}, "gate", gate)...)
	c.Stdin = pr
	p := startCmd(t, c)
	first := numbered(69, "record %02d")
	if _, err := io.WriteString(pw, first); err != nil {
		t.Fatal(err)
	}
	p.waitFor("total=69")
	// The read of stdin now waits for more.
	p.signal(syscall.SIGTERM)
	p.waitFor("gate: started batch 1")
	if _, err := io.WriteString(pw, "record 70\n"); err != nil {
		t.Fatal(err)
	}
	open()
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d, want 143; stderr:\n%s", code, p.stderr())
	}
	pw.Close()
	rest, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.stdout.String(); got != first {
		t.Errorf("delivered %q, want records 1 to 69", got)
	}
	if string(rest) != "record 70\n" {
		t.Errorf("the next reader got %q, want record 70; stderr:\n%s", rest, p.stderr())
	}
	if n := summary(t, p.stderr()); n[0] != 69 || n[1] != 69 || n[3] != 0 {
		t.Errorf("summary %v, want 69 read and delivered, 0 undelivered", n)
	}
}

// TestSIGTERMFinishesTheCutRecord stops a busy run whose last read ended in
// the middle of a record, from a pipe a writer keeps full and from a file.
// The record is read to its end and delivered: exit 143, and the output
// followed by what the input still holds is the input.
func TestSIGTERMFinishesTheCutRecord(t *testing.T) {
	input := lines(300000, "line %07d of a record long enough that reads end inside one")
	t.Run("pipe", func(t *testing.T) {
		gate, open := shutGate(t)
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		c := exec.Command(bin, execArgs(t, []string{"-n", "1000", "-j", "2", "exec"}, "gate", gate)...)
		c.Stdin = pr
		p := startCmd(t, c)
		written := make(chan error, 1)
		go func() {
			// Writes of an odd size, as seq's, end inside records.
			var err error
			for s := input; len(s) > 0 && err == nil; {
				n := min(len(s), 4093)
				_, err = io.WriteString(pw, s[:n])
				s = s[n:]
			}
			pw.Close()
			written <- err
		}()
		p.waitFor("gate: started batch 2")
		p.signal(syscall.SIGTERM)
		p.waitFor("delivering what was read")
		open()
		code := p.wait()
		rest, err := io.ReadAll(pr)
		if err != nil || <-written != nil {
			t.Fatal(err)
		}
		checkStopped(t, p, code, input, p.stdout.String(), len(input)-len(rest))
		if len(rest) == 0 {
			t.Fatal("the whole input was read: nothing was left to stop")
		}
	})
	t.Run("file", func(t *testing.T) {
		gate, open := shutGate(t)
		in, err := os.CreateTemp(t.TempDir(), "in")
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if _, err := in.WriteString(input); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		c := exec.Command(bin, execArgs(t, []string{"-n", "1000", "-j", "2", "exec"}, "gate", gate)...)
		c.Stdin = in // its offset is shared: it says how far batchpipe read
		p := startCmd(t, c)
		p.waitFor("gate: started batch 2")
		p.signal(syscall.SIGTERM)
		p.waitFor("delivering what was read")
		open()
		code := p.wait()
		off, err := in.Seek(0, io.SeekCurrent)
		if err != nil {
			t.Fatal(err)
		}
		checkStopped(t, p, code, input, p.stdout.String(), int(off))
		if int(off) == len(input) {
			t.Fatal("the whole input was read: nothing was left to stop")
		}
	})
}

// checkStopped checks a run stopped by SIGTERM after it took the first
// taken bytes of input: exit 143, every record taken delivered once.
func checkStopped(t *testing.T, p *proc, code int, input, out string, taken int) {
	t.Helper()
	if code != 143 {
		t.Errorf("exit %d, want 143; stderr:\n%.3000s", code, p.stderr())
	}
	if taken > 0 && input[taken-1] != '\n' {
		t.Errorf("batchpipe took %d bytes, which end inside a record", taken)
	}
	if got, want := sortedLines(out), sortedLines(input[:taken]); !slices.Equal(got, want) {
		t.Fatalf("took %d bytes (%d records) from the input, delivered %d bytes (%d records)",
			taken, len(want), len(out), len(got))
	}
	if n := summary(t, p.stderr()); n[3] != 0 || n[1] != strings.Count(input[:taken], "\n") {
		t.Errorf("summary %v, want every record taken delivered", n)
	}
}

func init() {
	// term-late OUT says it is ready, waits for SIGTERM, which it catches,
	// then appends its stdin to OUT and exits 0: it finishes its work late.
	children["term-late"] = func(args []string) int {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		in, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 1
		}
		fmt.Fprintf(os.Stderr, "term-late: ready pid=%d\n", os.Getpid())
		<-term
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return 1
		}
		if _, err := f.Write(in); err != nil || f.Close() != nil {
			return 1
		}
		return 0
	}
	// bg-stdout starts a grandchild that ignores SIGTERM and hangs holding
	// only its stdout, says the grandchild's pid, copies stdin to stdout
	// and exits 0.
	children["bg-stdout"] = func([]string) int {
		self, err := os.Executable()
		if err != nil {
			return 1
		}
		gc := exec.Command(self)
		gc.Env = append(os.Environ(), "BATCHPIPE_TEST_CHILD=ignore-term")
		gc.Stdout = os.Stdout
		if err := gc.Start(); err != nil {
			return 1
		}
		fmt.Fprintf(os.Stderr, "bg-stdout: grandchild pid=%d\n", gc.Process.Pid)
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			return 1
		}
		return 0
	}
}

// killedBy returns a check that process pid, which would otherwise run
// for an hour, was killed: it ends within seconds. Called once batchpipe
// has exited, it says that batchpipe left it dying, not running. (A
// SIGKILL takes effect once the process is next scheduled, so it may not
// be gone the instant batchpipe is.)
func killedBy(t *testing.T, pid int) func() bool {
	t.Helper()
	fd, err := pidfdOpen(pid)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	t.Cleanup(func() {
		pidfdKill(fd) // should batchpipe have left it behind
		syscall.Close(fd)
	})
	return func() bool { return exited(t, fd, 10*time.Second) }
}

// pidIn returns the number after "pid=" in line.
func pidIn(t *testing.T, line string) int {
	t.Helper()
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no pid in %q", line)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// TestChildrenNeverOutliveBatchpipe: past --shutdown-timeout a command gets
// SIGTERM and its full --kill-after before SIGKILL, and batchpipe exits
// only once it is gone. One that finishes its batch in that time delivered
// it: counting it undelivered would have a replay send it twice.
func TestChildrenNeverOutliveBatchpipe(t *testing.T) {
	t.Run("finishes after SIGTERM", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		p := start(t, execArgs(t, []string{"-n", "2", "--shutdown-timeout", "200ms", "exec", "--kill-after", "1m"}, "term-late", out)...)
		p.write("a\nb\n")
		p.waitFor("term-late: ready")
		p.signal(syscall.SIGTERM)
		code := p.wait()
		if got, _ := os.ReadFile(out); string(got) != "a\nb\n" {
			t.Fatalf("the command wrote %q", got)
		}
		if code != 143 {
			t.Errorf("exit %d, want 143: the batch was delivered; stderr:\n%s", code, p.stderr())
		}
		if n := summary(t, p.stderr()); n[1] != 2 || n[3] != 0 {
			t.Errorf("summary %v, want 2 delivered", n)
		}
	})
	t.Run("ignores SIGTERM", func(t *testing.T) {
		const killAfter = 6 * time.Second // past the 5 s batchpipe once waited
		// stdout a file: a command left running would hold a pipe open.
		stdout, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
		if err != nil {
			t.Fatal(err)
		}
		defer stdout.Close()
		c := exec.Command(bin, execArgs(t, []string{"-n", "1", "--shutdown-timeout", "200ms", "exec", "--kill-after", killAfter.String()}, "ignore-term")...)
		c.Stdout = stdout
		p := startCmd(t, c)
		p.write("a\n")
		killed := killedBy(t, pidIn(t, p.waitFor("ignore-term: pid=")))
		p.signal(syscall.SIGTERM)
		signalled := time.Now()
		if code := p.wait(); code != 1 {
			t.Errorf("exit %d, want 1; stderr:\n%s", code, p.stderr())
		}
		if !killed() {
			t.Fatal("the command outlived batchpipe")
		}
		if took := time.Since(signalled); took < killAfter {
			t.Errorf("killed %v after the signal: --kill-after %v was not honoured", took, killAfter)
		}
	})
}

// TestBackgroundHoldingStdoutIsKilled: a command that exits 0 leaving a
// process in the background that holds its stdout is waited for
// --kill-after, then its group is killed, at every -j.
func TestBackgroundHoldingStdoutIsKilled(t *testing.T) {
	for _, j := range []string{"1", "2"} {
		t.Run("j"+j, func(t *testing.T) {
			stdout, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
			if err != nil {
				t.Fatal(err)
			}
			defer stdout.Close()
			c := exec.Command(bin, execArgs(t, []string{"-n", "1", "-j", j, "exec", "--kill-after", "100ms"}, "bg-stdout")...)
			c.Stdout = stdout
			p := startCmd(t, c)
			p.write("a\n")
			killed := killedBy(t, pidIn(t, p.waitFor("grandchild pid=")))
			p.stdin.Close()
			code := p.wait()
			if !killed() {
				t.Fatal("a process holding the command's stdout outlived batchpipe")
			}
			if code != 0 {
				t.Errorf("exit %d, want 0; stderr:\n%s", code, p.stderr())
			}
			if got := readFile(t, stdout.Name()); got != "a\n" {
				t.Errorf("output %q", got)
			}
		})
	}
}

// TestSignalWhileOpeningAFIFO: an output or dead letter that is a FIFO
// with no reader makes open wait; SIGTERM and SIGINT still end the run.
func TestSignalWhileOpeningAFIFO(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		args func(fifo string) []string
	}{
		{"output", syscall.SIGTERM, func(fifo string) []string { return []string{"file", fifo} }},
		{"dead letter", syscall.SIGINT, func(fifo string) []string { return []string{"--dead-letter", fifo, "file", "-"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			p := start(t, tc.args(fifo)...)
			waitInFIFOOpen(t, p)
			p.signal(tc.sig)
			if code := p.wait(); code != 128+int(tc.sig) {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, 128+int(tc.sig), p.stderr())
			}
		})
	}
}

// waitInFIFOOpen returns once a thread of p waits in the open of a FIFO.
func waitInFIFOOpen(t *testing.T, p *proc) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)
	for {
		select {
		case <-p.waited:
			t.Fatalf("batchpipe exited (%d); stderr:\n%s", p.code, p.stderr())
		default:
		}
		tasks, _ := os.ReadDir(dir)
		for _, task := range tasks {
			if w, _ := os.ReadFile(filepath.Join(dir, task.Name(), "wchan")); string(w) == "wait_for_partner" {
				return
			}
		}
		runtime.Gosched()
	}
}

// TestBrokenPipeStopsAtOnce: like cat and seq, batchpipe stops at once on
// a broken pipe at stdout, with the status of SIGPIPE and at most a line,
// from the file sink and from commands' output.
func TestBrokenPipeStopsAtOnce(t *testing.T) {
	input := lines(1000000, "%d")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"file", []string{"-n", "1000", "file", "-"}},
		{"exec j1", execArgs(t, []string{"-n", "1000", "exec"}, "cat")},
		{"exec j2", execArgs(t, []string{"-n", "1000", "-j", "2", "exec"}, "cat")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			c := exec.Command(bin, tc.args...)
			c.Stdin = strings.NewReader(input)
			c.Stdout = pw
			p := startCmd(t, c)
			pw.Close()
			// head -1
			if _, err := bufio.NewReader(pr).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			code := p.wait()
			if code != 141 {
				t.Errorf("exit %d, want 141; stderr:\n%.2000s", code, p.stderr())
			}
			if n := strings.Count(p.stderr(), "\n") + 1; n > 1 || len(p.stderr()) > 120 {
				t.Errorf("%d lines on stderr, want at most one short one:\n%.2000s", n, p.stderr())
			}
		})
	}
}

// TestClosedStdoutIsRefused: with stdout closed (>&-) there is nowhere to
// deliver to: exit 2 before reading, as cat fails.
func TestClosedStdoutIsRefused(t *testing.T) {
	for _, args := range [][]string{{"file", "-"}, execArgs(t, []string{"exec"}, "cat")} {
		c := exec.Command("sh", "-c", `exec "$@" >&-`, "sh")
		c.Args = append(c.Args, append([]string{bin}, args...)...)
		c.Stdin = strings.NewReader("a\nb\n")
		var errb bytes.Buffer
		c.Stderr = &errb
		err := c.Run()
		if code := c.ProcessState.ExitCode(); code != 2 {
			t.Errorf("%q: exit %d (%v), want 2; stderr:\n%s", args, code, err, errb.String())
		}
		if !strings.Contains(errb.String(), "stdout is closed") {
			t.Errorf("%q: stderr does not say stdout is closed:\n%s", args, errb.String())
		}
	}
}

// TestZeroBackoffMeansZero: --backoff 0 --max-backoff 0 retry at once.
func TestZeroBackoffMeansZero(t *testing.T) {
	dead := filepath.Join(t.TempDir(), "dead")
	r := run(t, strings.NewReader("a\nb\nc\n"), execArgs(t, []string{"-n", "1", "--retries", "3", "--backoff", "0", "--max-backoff", "0", "--dead-letter", dead, "exec"}, "fail")...)
	waits := regexp.MustCompile(`msg=retrying .* wait=(\S+)`).FindAllStringSubmatch(r.stderr, -1)
	if len(waits) != 9 {
		t.Fatalf("%d retries, want 9; stderr:\n%s", len(waits), r.stderr)
	}
	for _, w := range waits {
		if w[1] != "0s" {
			t.Fatalf("a retry waited %s, want 0s", w[1])
		}
	}
}

// TestStuckDeliveryEndsInTime: a delivery stuck in a write to a pipe
// nobody reads holds the exit no longer than --shutdown-timeout, and not
// at all after a second signal.
func TestStuckDeliveryEndsInTime(t *testing.T) {
	for _, second := range []bool{false, true} {
		t.Run(fmt.Sprintf("second signal %v", second), func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			timeout := "1s"
			if second {
				timeout = "1h"
			}
			c := exec.Command(bin, "-v", "-n", "10", "--shutdown-timeout", timeout, "file", "-")
			c.Stdout = w
			p := startCmd(t, c)
			w.Close()
			line := strings.Repeat("x", 1000) + "\n"
			go p.stdin.Write([]byte(strings.Repeat(line, 200))) // more than the pipe holds
			p.waitFor("seq=6")                                  // the next batch fills the 64 KiB pipe
			p.signal(syscall.SIGTERM)
			p.waitFor("again to abandon")
			signalled := time.Now()
			if second {
				p.signal(syscall.SIGTERM)
			}
			if code := p.wait(); code != 1 {
				t.Fatalf("exit %d, want 1: %s", code, p.stderr())
			}
			// The 5 s batchpipe once gave a stuck sink are far beyond either.
			if took := time.Since(signalled); took > 4*time.Second {
				t.Errorf("exit %v after the signal", took)
			}
		})
	}
}

func init() {
	// failgate GATE fails batch 1 once GATE opens (see shutGate), and
	// other batches at once, saying so.
	children["failgate"] = func(args []string) int {
		io.Copy(io.Discard, os.Stdin)
		if os.Getenv("BATCHPIPE_SEQ") != "1" {
			fmt.Fprintf(os.Stderr, "failgate: failing batch %s\n", os.Getenv("BATCHPIPE_SEQ"))
			return 1
		}
		f, err := os.Open(args[0])
		if err != nil {
			return 1
		}
		syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
		return 1
	}
}

// TestOverLimitRecordSparesItsNeighbours: a record over
// --max-record-bytes is not delivered, but the records around it are, and
// the error names the first record not delivered, from where a resumed run
// loses nothing.
func TestOverLimitRecordSparesItsNeighbours(t *testing.T) {
	in := "a\n" + fmt.Sprintf("%0100d\n", 0) + "b\n"
	r := run(t, strings.NewReader(in), "--max-record-bytes", "50", "file", "-")
	if r.stdout != "a\nb\n" {
		t.Errorf("delivered %q, want a and b", r.stdout)
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if want := "first record not delivered: record 2 at byte offset 2"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
	}
	if n := summary(t, r.stderr); n[1] != 2 || n[3] != 1 {
		t.Errorf("summary %v, want 2 delivered, 1 undelivered", n)
	}
}

// TestErrorNamesTheFirstUndeliveredRecord: with -j 2, batch 2 fails
// before batch 1; the error still says to resume from batch 1's first
// record, not from the first failure seen.
func TestErrorNamesTheFirstUndeliveredRecord(t *testing.T) {
	gate, open := shutGate(t)
	p := start(t, execArgs(t, []string{"-n", "2", "-j", "2", "--retries", "0", "exec"}, "failgate", gate)...)
	p.write("1\n2\n3\n4\n")
	p.stdin.Close()
	p.waitFor("failgate: failing batch 2")
	open()
	if code := p.wait(); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, p.stderr())
	}
	if want := "first record not delivered: record 1 at byte offset 0"; !strings.Contains(p.stderr(), want) {
		t.Errorf("stderr does not say %q:\n%s", want, p.stderr())
	}
}

// TestOverLimitRecordGoesToTheDeadLetter: with --dead-letter, a record over
// --max-record-bytes is kept there whole, whether it was read in one piece
// or across reads, so the dead letter replays it; its neighbours are
// delivered, and the run exits 3.
func TestOverLimitRecordGoesToTheDeadLetter(t *testing.T) {
	small := fmt.Sprintf("%0100d", 1)
	big := strings.Repeat("y", 3<<20) // spans several reads
	dead := filepath.Join(t.TempDir(), "dead")
	in := "a\n" + small + "\nb\n" + big + "\nc\n"
	r := run(t, strings.NewReader(in), "--max-record-bytes", "50", "--dead-letter", dead, "file", "-")
	if r.stdout != "a\nb\nc\n" {
		t.Errorf("delivered %.100q, want a, b and c", r.stdout)
	}
	if r.code != 3 {
		t.Errorf("exit %d, want 3; stderr:\n%s", r.code, r.stderr)
	}
	if got := readFile(t, dead); got != small+"\n"+big+"\n" {
		t.Errorf("dead letter holds %d bytes %.60q…, want the two records over the limit", len(got), got)
	}
	if n := summary(t, r.stderr); n[1] != 3 || n[2] != 2 || n[3] != 0 {
		t.Errorf("summary %v, want 3 delivered, 2 dead-lettered", n)
	}
}

// childrenOf returns the pids of pid's children now.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("tasks of %d: %v", pid, err)
	}
	var kids []int
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			t.Fatal(err)
		}
		for f := range strings.FieldsSeq(string(b)) {
			kid, _ := strconv.Atoi(f)
			kids = append(kids, kid)
		}
	}
	return kids
}

// TestHangUpAndQuitDrain: SIGHUP (the terminal or ssh session of
// `tail -F app.log | batchpipe …` closing) and SIGQUIT drain as SIGTERM
// does: every record read is delivered, the summary says so, the status is
// 128 + the signal's number, and no child is left running. SIGQUIT first
// writes every goroutine's stack, as Go does, but neither loses what was
// read nor exits 2, the status of usage errors.
func TestHangUpAndQuitDrain(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			gate, open := shutGate(t)
			p := start(t, execArgs(t, []string{"-v", "-n", "2", "-t", "0", "exec"}, "gate", gate)...)
			in := "a\nb\nc\nd\ne\n"
			p.write(in)
			p.waitFor("total=5")
			p.waitFor("gate: started batch 1")
			var kids []func() bool
			for _, pid := range childrenOf(t, p.cmd.Process.Pid) {
				kids = append(kids, killedBy(t, pid))
			}
			p.signal(sig)
			p.waitFor("delivering what was read")
			open()
			code := p.wait()
			if want := 128 + int(sig); code != want {
				t.Fatalf("exit %d, want %d; stderr:\n%.3000s", code, want, p.stderr())
			}
			if got := sortedLines(p.stdout.String()); !slices.Equal(got, sortedLines(in)) {
				t.Errorf("delivered %q, want %q", got, sortedLines(in))
			}
			if n := summary(t, p.stderr()); n[0] != 5 || n[1] != 5 || n[3] != 0 {
				t.Errorf("summary %v, want 5 read, 5 delivered", n)
			}
			if sig == syscall.SIGQUIT {
				for _, want := range []string{"batchpipe: SIGQUIT: goroutine stacks follow", "goroutine 1 ["} {
					if !strings.Contains(p.stderr(), want) {
						t.Errorf("stderr does not say %q:\n%.3000s", want, p.stderr())
					}
				}
			}
			for _, gone := range kids {
				if !gone() {
					t.Error("a child of batchpipe outlived it")
				}
			}
		})
	}
}

// TestNohupKeepsRunning: under nohup (SIGHUP ignored at start) a hang-up
// is still ignored, by batchpipe and its commands; SIGTERM then drains.
func TestNohupKeepsRunning(t *testing.T) {
	c := exec.Command("sh", "-c", `trap "" HUP; exec "$0" "$@"`, bin, "-v", "-n", "2", "-t", "0", "file", "-")
	p := startCmd(t, c)
	p.write("a\n")
	p.waitFor("total=1")
	p.signal(syscall.SIGHUP)
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d, want 143: SIGHUP was not ignored; stderr:\n%s", code, p.stderr())
	}
	if got := p.stdout.String(); got != "a\n" {
		t.Errorf("delivered %q", got)
	}
}

// groupAlive reports whether a process of group pgid is still running (a
// zombie is not: it waits only to be reaped).
func groupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and ")".
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 2 && fields[0] != "Z" && fields[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// TestKillNineLeavesNoCommand: batchpipe killed with SIGKILL, which it
// cannot catch, leaves no command running, nor anything a command started
// (the whole process group goes), nor any other child of its own.
func TestKillNineLeavesNoCommand(t *testing.T) {
	p := start(t, "-n", "1", "-j", "2", "exec", "--", "sh", "-c", `sleep 600 & echo "running pgid=$$ pid=$!" >&2; wait; cat`)
	p.write("a\nb\n")
	var groups []int
	var gone []func() bool
	for len(groups) < 2 {
		line := p.waitLine("running pgid=", func(l string) bool {
			return strings.Contains(l, "running pgid=") && !slices.Contains(groups, pidAfter(l, "pgid="))
		})
		pgid := pidAfter(line, "pgid=")
		groups = append(groups, pgid)
		t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) }) // should batchpipe leave it
		gone = append(gone, killedBy(t, pgid), killedBy(t, pidAfter(line, " pid=")))
	}
	for _, pid := range childrenOf(t, p.cmd.Process.Pid) {
		gone = append(gone, killedBy(t, pid))
	}
	p.cmd.Process.Kill()
	p.wait()
	for _, ok := range gone {
		if !ok() {
			t.Fatalf("a process batchpipe started outlived it (groups %v)", groups)
		}
	}
	// Whatever else was in the groups got the same SIGKILL.
	for _, pgid := range groups {
		kafkatest.Eventually(t, fmt.Sprintf("end of every process of group %d", pgid), func() bool { return !groupAlive(pgid) })
	}
}

// pidAfter returns the number after key in line.
func pidAfter(line, key string) int {
	_, s, _ := strings.Cut(line, key)
	end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(s)
	}
	n, _ := strconv.Atoi(s[:end])
	return n
}

// silentBroker listens for Kafka clients, takes their connections and never
// answers; accepted is closed at the first connection.
func silentBroker(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if conns = append(conns, c); len(conns) == 1 {
				close(ch)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), ch
}

// TestSignalDuringKafkaStartUp: a signal that comes while Kafka is being
// opened stops the run at once, with the signal's status: while a broker
// that takes the connection and never answers is asked for metadata (which
// holds the start for seconds, then exits 69), and while the group is
// joined and the join is not answered.
func TestSignalDuringKafkaStartUp(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		t.Run("silent broker "+sig.String(), func(t *testing.T) {
			addr, accepted := silentBroker(t)
			p := start(t, "--kafka-brokers", addr, "--topic", "t", "--kafka-timeout", "1m", "file", "-")
			select {
			case <-accepted:
			case <-p.waited:
				t.Fatalf("batchpipe exited (%d) before connecting; stderr:\n%s", p.code, p.stderr())
			}
			p.signal(sig)
			if code, want := p.wait(), 128+int(sig); code != want {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, want, p.stderr())
			}
		})
	}
	t.Run("group join", func(t *testing.T) {
		k := fakeKafka(t, "it swallows the group join", 1)
		joining := make(chan struct{})
		var once sync.Once
		k.fake.ControlKey(kmsg.JoinGroup.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			k.fake.KeepControl()
			once.Do(func() { close(joining) })
			return nil, nil, true // handled, with no answer
		})
		p := start(t, "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group,
			"--kafka-timeout", "1m", "--shutdown-timeout", "30s", "file", "-")
		select {
		case <-joining:
		case <-p.waited:
			t.Fatalf("batchpipe exited (%d) before joining; stderr:\n%s", p.code, p.stderr())
		}
		signalled := time.Now()
		p.signal(syscall.SIGINT)
		code := p.wait()
		// Not --shutdown-timeout: nothing was read, nothing waits.
		if took := time.Since(signalled); took > 10*time.Second {
			t.Errorf("exited %v after the signal; stderr:\n%s", took.Round(time.Millisecond), p.stderr())
		}
		if code != 130 {
			t.Fatalf("exit %d, want 130; stderr:\n%s", code, p.stderr())
		}
	})
	t.Run("join held by a stopped member", func(t *testing.T) {
		if realKafka == nil {
			t.Skip("a real broker's rebalance waits for a stopped member; on kfake, see group join")
		}
		k := newKafka(t, 1)
		args := []string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group,
			"--kafka-session-timeout", "25s", "--kafka-timeout", "1m", "--shutdown-timeout", "1m", "file", os.DevNull}
		a := start(t, args...)
		a.waitFor("kafka: assigned")
		a.signal(syscall.SIGSTOP)
		defer func() {
			a.signal(syscall.SIGCONT)
			a.signal(syscall.SIGTERM)
			a.wait()
		}()
		b := start(t, args...)
		admin, err := sarama.NewClusterAdmin([]string{k.addr}, kafkatest.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		// The second member's join waits for the first, stopped, to join
		// again, until its session times out.
		kafkatest.Eventually(t, "a rebalance waiting for the stopped member", func() bool {
			gs, err := admin.DescribeConsumerGroups([]string{k.group})
			return err == nil && len(gs) == 1 && gs[0].State == "PreparingRebalance"
		})
		signalled := time.Now()
		b.signal(syscall.SIGTERM)
		code := b.wait()
		if took := time.Since(signalled); took > 10*time.Second {
			t.Errorf("exited %v after the signal; stderr:\n%s", took.Round(time.Millisecond), b.stderr())
		}
		if code != 143 {
			t.Fatalf("exit %d, want 143; stderr:\n%s", code, b.stderr())
		}
	})
}
