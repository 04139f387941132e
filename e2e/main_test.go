// Package e2e holds the end-to-end tests: the binary is built once and
// driven as a user would, through real pipes, files and signals. The test
// binary doubles as the child process for the exec sink: with
// BATCHPIPE_TEST_CHILD set it acts out that role instead of running tests
// (the os/exec test pattern).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rcrowley/go-metrics"
	"go.uber.org/goleak"
)

// bin is the batchpipe binary under test.
var bin string

// repo is the repository's root: the binary is built from it, and the
// testdata the README shares with these tests lives there.
var repo string

// repoPath names a file under the repository's root.
func repoPath(elem ...string) string {
	return filepath.Join(append([]string{repo}, elem...)...)
}

// testSecrets are the passwords and tokens tests hand batchpipe. After the
// suite, no output of any run may hold one.
var testSecrets = []string{"TOKEN-e2e-1", "PASS-e2e-2", "s3cret-pass", "not-the-pass", "tok3f9aK2mQ8xZpL0vB7nR4wT1yE6uH5cJ9dG2sF8aXq"}

// outputs collects everything every run printed, for that check.
var outputs struct {
	sync.Mutex
	bytes.Buffer
}

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

func keepOutput(s ...string) {
	outputs.Lock()
	defer outputs.Unlock()
	for _, x := range s {
		outputs.WriteString(x)
	}
}

func TestMain(m *testing.M) {
	if role := os.Getenv("BATCHPIPE_TEST_CHILD"); role != "" {
		os.Exit(child(role, os.Args[1:]))
	}
	// The tests' own sarama clients would start go-metrics' ticker, a
	// goroutine that never ends; batchpipe turns these metrics off too.
	metrics.UseNilMetrics = true
	if err := loadRealKafka(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var err error
	if repo, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "batchpipe-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "batchpipe")
	if other := os.Getenv("BATCHPIPE_TEST_BIN"); other != "" {
		// Another build, such as main's, to see a new test fail on it.
		bin = other
	} else {
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = repo
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	for _, secret := range testSecrets {
		if i := bytes.Index(outputs.Bytes(), []byte(secret)); i >= 0 {
			fmt.Fprintf(os.Stderr, "a test secret appeared in batchpipe's output: …%s…\n",
				outputs.Bytes()[max(0, i-200):min(outputs.Len(), i+50)])
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// children maps a role to what the test binary does when run as a child.
var children = map[string]func(args []string) int{
	// cat copies stdin to stdout.
	"cat": func([]string) int {
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			return 1
		}
		return 0
	},
	// fsize runs a program with a file size limit: fsize BYTES PROG ARGS...
	// A write that crosses it is cut short with EFBIG.
	"fsize": func(args []string) int {
		limit, err := strconv.ParseUint(args[0], 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 99
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 99
		}
		lim.Cur = limit
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 99
		}
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "BATCHPIPE_TEST_CHILD=")
		})
		err = syscall.Exec(args[1], args[1:], env)
		fmt.Fprintln(os.Stderr, err)
		return 99
	},
}

func child(role string, args []string) int {
	f, ok := children[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
		return 99
	}
	return f(args)
}

// childCmd returns the argv that runs the test binary in role.
func childCmd(t *testing.T, role string) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A race-enabled binary sleeps a second at exit unless told not to.
	return []string{"env", "BATCHPIPE_TEST_CHILD=" + role, "GORACE=atexit_sleep_ms=0", self}
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
	want := what
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	seen := 0
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

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
