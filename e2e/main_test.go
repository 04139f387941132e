// Package e2e holds the end-to-end tests: the binary is built once and
// driven as a user would, through real pipes, files and signals. The test
// binary doubles as the child process for the exec sink: with
// BATCHPIPE_TEST_CHILD set it acts out that role instead of running tests
// (the os/exec test pattern).
package e2e

import (
	"bytes"
	"flag"
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

// secretsMu guards testSecrets while tests run, some in parallel.
var secretsMu sync.Mutex

// testSecrets are the passwords and tokens tests hand batchpipe. After the
// suite, no output of any run may hold one.
var testSecrets = []string{"TOKEN-e2e-1", "PASS-e2e-2", "s3cret-pass", "not-the-pass", "tok3f9aK2mQ8xZpL0vB7nR4wT1yE6uH5cJ9dG2sF8aXq"}

// outputs collects everything every run printed, for that check.
var outputs struct {
	sync.Mutex
	bytes.Buffer
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
	if set := os.Getenv("BATCHPIPE_TEST_KAFKA_TESTS"); set != "" {
		flag.Parse()
		run, err := kafkaRun(set, flag.Lookup("test.run").Value.String())
		if err == nil {
			err = flag.Set("test.run", run)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
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
