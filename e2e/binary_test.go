package e2e

// Helpers that drive the batchpipe binary: run it to the end (run), or
// start it with a pipe for stdin and wait on what it says on stderr (proc);
// read its summary and log lines; check its usage errors.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A usageCase is a command line and what its usage error (exit 2) says.
type usageCase struct {
	args []string
	want string
}

// checkUsage runs each case and checks that it exits 2 saying want.
func checkUsage(t *testing.T, cases []usageCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, nil, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

// result is what a finished run left behind.
type result struct {
	stdout, stderr string
	code           int
}

// run runs batchpipe to completion with stdin as input.
func run(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	c.Stdin = stdin
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	keepOutput(out.String(), errb.String())
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// proc is a running batchpipe with its stdin as a pipe and its stderr read
// line by line, so a test can wait for what it says.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer // written by the exec package; read after wait

	mu     sync.Mutex
	lines  []string
	newLn  chan struct{} // closed and replaced on every stderr line
	waited chan struct{}
	code   int
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(bin, args...))
}

// startCmd starts c, whose stdout goes to proc.stdout and stdin comes from
// proc.stdin, unless already set.
func startCmd(t *testing.T, c *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, newLn: make(chan struct{}), waited: make(chan struct{}), cmd: c}
	if c.Stdout == nil {
		c.Stdout = &p.stdout
	}
	var err error
	if c.Stdin == nil {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.newLn)
			p.newLn = make(chan struct{})
			p.mu.Unlock()
		}
		err := p.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		}
		p.mu.Lock()
		keepOutput(strings.Join(p.lines, "\n"), p.stdout.String())
		p.mu.Unlock()
		close(p.waited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.waited:
		default:
			p.cmd.Process.Kill()
			<-p.waited
		}
	})
	return p
}

// write sends s to batchpipe's stdin.
func (p *proc) write(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, s); err != nil {
		p.t.Fatalf("write stdin: %v", err)
	}
}

// waitFor blocks until a stderr line contains want, and returns it.
func (p *proc) waitFor(want string) string {
	p.t.Helper()
	return p.waitLine(want, func(line string) bool { return strings.Contains(line, want) })
}

// waitLine blocks until a stderr line satisfies ok, and returns it; what
// describes the line in failures.
func (p *proc) waitLine(what string, ok func(string) bool) string {
	p.t.Helper()
	return p.waitLineFrom(0, what, ok)
}

// lineCount returns how many stderr lines were read so far, for waitSince.
func (p *proc) lineCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitSince is waitFor for a line after the first n: one said before (by
// an earlier group session, say) does not count.
func (p *proc) waitSince(n int, want string) string {
	p.t.Helper()
	return p.waitLineFrom(n, want, func(line string) bool { return strings.Contains(line, want) })
}

// waitLineFrom is waitLine for the lines after the first seen.
func (p *proc) waitLineFrom(seen int, what string, ok func(string) bool) string {
	p.t.Helper()
	want := what
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		p.mu.Lock()
		lines, next := p.lines, p.newLn
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if ok(lines[seen]) {
				return lines[seen]
			}
		}
		select {
		case <-next:
		case <-p.waited:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n == seen {
				p.t.Fatalf("batchpipe exited (%d) before saying %q; stderr:\n%s", p.code, want, p.stderr())
			}
		case <-timeout.C:
			p.t.Fatalf("batchpipe did not say %q within a minute; stderr:\n%s", want, p.stderr())
		}
	}
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatalf("signal %v: %v", s, err)
	}
}

// wait waits for batchpipe to exit and returns its exit status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.waited:
	case <-time.After(time.Minute):
		p.t.Fatalf("batchpipe did not exit within a minute; stderr:\n%s", p.stderr())
	}
	return p.code
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// startIn starts batchpipe in directory dir.
func startIn(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Dir = dir
	return startCmd(t, c)
}

// waitForLines blocks until ok holds for the stderr lines so far.
func (p *proc) waitForLines(what string, ok func(lines []string) bool) {
	p.t.Helper()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		p.mu.Lock()
		lines, next := p.lines, p.newLn
		p.mu.Unlock()
		if ok(lines) {
			return
		}
		select {
		case <-next:
		case <-p.waited:
			p.t.Fatalf("batchpipe exited (%d) before %s; stderr:\n%s", p.code, what, p.stderr())
		case <-timeout.C:
			p.t.Fatalf("no %s within a minute; stderr:\n%s", what, p.stderr())
		}
	}
}

// logValue returns the value of key=value in a log line.
func logValue(line, key string) (string, bool) {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return "", false
	}
	v := line[i+len(key)+2:]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v, true
}

// assignedCount returns the number of partitions in the last assignment
// line, or -1.
func assignedCount(lines []string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "kafka: assigned") {
			v, _ := logValue(lines[i], "count")
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// waitClosed blocks until ch is closed; what describes it in failures.
func (p *proc) waitClosed(what string, ch <-chan struct{}) {
	p.t.Helper()
	select {
	case <-ch:
	case <-p.waited:
		p.t.Fatalf("batchpipe exited (%d) before %s; stderr:\n%s", p.code, what, p.stderr())
	case <-time.After(time.Minute):
		p.t.Fatalf("no %s within a minute; stderr:\n%s", what, p.stderr())
	}
}

var summaryRes = [5]*regexp.Regexp{
	regexp.MustCompile(`batchpipe: (\d+) records \(`),
	regexp.MustCompile(` (\d+) delivered`),
	regexp.MustCompile(` (\d+) dead-lettered`),
	regexp.MustCompile(` (\d+) undelivered`),
	regexp.MustCompile(` (\d+) retries`),
}

// summary returns read, delivered, dead-lettered, undelivered and retries
// from the summary line.
func summary(t *testing.T, stderr string) [5]int {
	t.Helper()
	var line string
	for l := range strings.SplitSeq(stderr, "\n") {
		if strings.HasPrefix(l, "batchpipe: ") && strings.Contains(l, " undelivered") {
			line = l
		}
	}
	var n [5]int
	for i, re := range summaryRes {
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no %s in the summary line; stderr:\n%s", re, stderr)
		}
		n[i], _ = strconv.Atoi(m[1])
	}
	return n
}
