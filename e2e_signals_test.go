//go:build linux

package main

// The cases of "signals, pipes and children": what a stop by signal leaves
// behind in the input, the output and the process table.

import (
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
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
