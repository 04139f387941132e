package cmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka"
)

// readmeSection returns the README's section under heading, up to the next
// heading of its level or above.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README: no %q", heading)
	}
	s = s[i+len(heading)+2:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// The README's exit-status table is exitTable: change the one, and this
// test says to change the other.
func TestREADMEExitTable(t *testing.T) {
	var table strings.Builder
	for l := range strings.Lines(readmeSection(t, "## Exit status")) {
		if strings.HasPrefix(l, "|") {
			table.WriteString(l)
		}
	}
	if got, want := table.String(), exitTableMarkdown(); got != want {
		t.Errorf("README's exit-status table differs from exitTable (cmd/exit.go); it should read:\n%s", want)
	}
}

func TestHelpExitTable(t *testing.T) {
	help := exitTableText()
	for _, r := range exitTable {
		if !strings.Contains(help, "\n  "+r.codeList()+" ") && !strings.HasPrefix(help, "  "+r.codeList()+" ") {
			t.Errorf("--help: no line for %s", r.codeList())
		}
	}
	for l := range strings.Lines(help) {
		if len(strings.TrimRight(l, "\n")) > 80 {
			t.Errorf("--help: line over 80 columns: %q", l)
		}
		if strings.Contains(l, "`") {
			t.Errorf("--help: Markdown left in %q", l)
		}
	}
}

// Errors map to exit statuses by their type: Kafka's by their kind, also
// wrapped by a run that got as far as opening.
func TestErrorStatus(t *testing.T) {
	down := &kafka.Error{Kind: kafka.Unavailable, Err: errors.New("no broker answered")}
	denied := &kafka.Error{Kind: kafka.Refused, Err: errors.New("SASL authentication failed")}
	for _, tc := range []struct {
		err  error
		code int
		hint bool
	}{
		{errors.New("3 records not delivered"), exitFailed, false},
		{usagef("--topic: give a name"), exitUsage, true},
		{refused(errors.New("cannot write")), exitUsage, false},
		{&unavailableError{errors.New("port taken")}, exitUnavailable, false},
		{down, exitUnavailable, false},
		{&startedError{down, gauges{}}, exitUnavailable, false},
		{denied, exitUsage, false},
		{refused(denied), exitUsage, false},
		{fmt.Errorf("kafka sink: %w", denied), exitUsage, false},
	} {
		code, hint := errorStatus(tc.err)
		if code != tc.code || hint != tc.hint {
			t.Errorf("%T %v: exit %d, hint %v; want %d, %v", tc.err, tc.err, code, hint, tc.code, tc.hint)
		}
	}
}

// Every kind of bad command line is a usageError, by type, whichever
// command cobra finds it in; its message is cobra's or pflag's, made plain.
func TestBadCommandLinesAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-recrods", "3", "file", "-"}, "unknown flag: --max-recrods (did you mean --max-records?)"},
		{[]string{"file", "--nosuch", "-"}, "unknown flag: --nosuch"},
		{[]string{"-Z", "file", "-"}, "unknown shorthand flag: 'Z' in -Z"},
		{[]string{"version", "--nosuch"}, "unknown flag: --nosuch"},
		{[]string{"completion", "zsh", "--nosuch"}, "unknown flag: --nosuch"},
		{[]string{"-n", "abc", "file", "-"}, `invalid argument "abc" for "-n, --max-records" flag: not a whole number`},
		{[]string{"exec", "--timeout", "x", "--", "cat"}, `invalid argument "x" for "--timeout" flag: not a duration (500ms, 2s, 1m30s, 1h)`},
		{[]string{"file", "--per-batch"}, "flag needs an argument: --per-batch"},
		{[]string{"-n"}, "flag needs an argument: 'n' in -n"},
		{[]string{"version", "x"}, `unknown command "x" for "batchpipe version"`},
		{[]string{"completion", "bash", "x"}, `unknown command "x" for "batchpipe completion bash"`},
		{[]string{"__complete"}, "requires at least 1 arg(s), only received 0"},
		{[]string{"file", "a", "b"}, "file: give one PATH (- for stdout) or --per-batch TEMPLATE"},
		{[]string{"nosuch"}, `unknown sink "nosuch" (sinks: file, exec, http, kafka, s3)`},
		{[]string{"-n", "3", "--", "file", "-"}, `sink "file" after "--": name the sink first, then "--" before a command's own arguments (batchpipe -n 100 exec -- wc -l)`},
		{[]string{"--", "nosuch"}, `unknown sink "nosuch" (sinks: file, exec, http, kafka, s3)`},
		{[]string{}, "no sink given (sinks: file, exec, http, kafka, s3)"},
		{[]string{"--fsync", "file", "out"}, "--fsync is a flag of the file sink: put it after 'file'"},
	} {
		var out, errb bytes.Buffer
		o := &options{streams: Streams{In: strings.NewReader(""), Out: &out, Err: &errb}}
		o.runHook = func(batcher.Config, sinkOpener) error { return nil }
		err := executeRoot(newRoot(o), tc.args)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %T %v, want a usageError", tc.args, err, err)
			continue
		}
		if code, hint := errorStatus(err); code != exitUsage || !hint {
			t.Errorf("%q: exit %d, hint %v; want %d with the hint", tc.args, code, hint, exitUsage)
		}
		if err.Error() != tc.want {
			t.Errorf("%q: %q, want %q", tc.args, err, tc.want)
		}
	}
}
