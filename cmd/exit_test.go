package cmd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

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
