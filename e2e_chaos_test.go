package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// totalRead returns the records-read count of a -v "read" line, or -1.
func totalRead(line string) int {
	m := regexp.MustCompile(`msg=read .*total=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// summaryRead returns the records read according to the summary line.
func summaryRead(t *testing.T, stderr string) int {
	t.Helper()
	m := regexp.MustCompile(`batchpipe: (\d+) records .* read`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary in:\n%s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestSignalsAtRandomMomentsLoseNothing stops runs with SIGTERM or SIGINT
// at random points. Every record read must be in the output exactly once,
// and the exit status must say which signal stopped it.
func TestSignalsAtRandomMomentsLoseNothing(t *testing.T) {
	const lines = 200_000
	var in bytes.Buffer
	for i := range lines {
		fmt.Fprintf(&in, "%d\n", i)
	}
	input := strings.Split(strings.TrimSuffix(in.String(), "\n"), "\n")
	for round := range 8 {
		sig, code := syscall.SIGTERM, 143
		if round%2 == 1 {
			sig, code = syscall.SIGINT, 130
		}
		j := []string{"1", "4"}[round/2%2]
		t.Run(fmt.Sprintf("%d-%v-j%s", round, sig, j), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			p := start(t, "-v", "-n", "100", "-j", j, "-t", "5ms", "file", out)
			// Input stays open: the signal, not its end, stops the run.
			at := 1 + rand.IntN(lines-1)
			go p.stdin.Write([]byte(strings.Join(input[:at], "\n") + "\n"))
			p.waitLine(fmt.Sprintf("total>=%d", at), func(l string) bool { return totalRead(l) >= at })
			p.signal(sig)
			if got := p.wait(); got != code {
				t.Fatalf("exit %d, want %d: %s", got, code, p.stderr())
			}
			n := summaryRead(t, p.stderr())
			if n != at {
				t.Fatalf("%d records read, %d written", n, at)
			}
			got := strings.Split(strings.TrimSuffix(readFile(t, out), "\n"), "\n")
			if n == 0 {
				got = nil
			}
			slices.SortFunc(got, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
			if !slices.Equal(got, input[:n]) {
				t.Fatalf("%d records read, output holds %d (lost or duplicated records)", n, len(got))
			}
		})
	}
}
