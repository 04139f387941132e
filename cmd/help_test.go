package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/spf13/pflag"
)

// help runs batchpipe ARGS --help at COLUMNS=80 and returns what it
// printed.
func help(t *testing.T, args ...string) string {
	t.Helper()
	t.Setenv("COLUMNS", "80")
	var out, errb bytes.Buffer
	code := Main(append(args, "--help"), Streams{In: strings.NewReader(""), Out: &out, Err: &errb}, nil)
	if code != exitOK {
		t.Fatalf("%v --help: exit %d: %s", args, code, errb.String())
	}
	return out.String()
}

// Every root flag is in one of the groups --help shows.
func TestEveryFlagGrouped(t *testing.T) {
	root := newRoot(&options{})
	known := map[string]bool{}
	for _, g := range flagGroups {
		known[g.key] = true
	}
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !known[groupOf(f)] {
			t.Errorf("--%s is in no flag group", f.Name)
		}
	})
}

// The root's help starts with the synopsis, examples and a flag group, at
// 80 columns; each sink's fits a screen and leaves the global flags to
// the root's.
func TestHelpFitsAScreen(t *testing.T) {
	root := help(t)
	top := strings.Join(strings.SplitN(root, "\n", 41)[:40], "\n")
	for _, want := range []string{"Usage:\n  batchpipe [flags] SINK", "Sinks:\n", "Examples:\n", "Input flags:\n  -0, --null"} {
		if !strings.Contains(top, want) {
			t.Errorf("the first 40 lines of --help lack %q:\n%s", want, top)
		}
	}
	for _, s := range sinkCommands {
		if !strings.Contains(root, "\n  "+s.name+" ") {
			t.Errorf("--help does not list the %s sink", s.name)
		}
	}
	check := func(name, text string) {
		inExamples := false
		for l := range strings.Lines(text) {
			l = strings.TrimSuffix(l, "\n")
			switch {
			case l == "Examples:":
				inExamples = true
			case l != "" && !strings.HasPrefix(l, " "):
				inExamples = false
			}
			if len([]rune(l)) > 80 && !inExamples {
				t.Errorf("%s: line over 80 columns: %q", name, l)
			}
		}
		for _, internal := range []string{"int32Slice", "stringArray", "stringSlice"} {
			if strings.Contains(text, internal) {
				t.Errorf("%s shows the Go type %s", name, internal)
			}
		}
	}
	check("--help", root)
	for _, s := range sinkCommands {
		h := help(t, s.name)
		check(s.name+" --help", h)
		if n := strings.Count(h, "\n"); n >= 70 {
			t.Errorf("%s --help is %d lines, want under 70", s.name, n)
		}
		if strings.Contains(h, "--max-records") || !strings.Contains(h, "see batchpipe --help") {
			t.Errorf("%s --help lists the global flags, or does not point to them:\n%s", s.name, h)
		}
		if !strings.Contains(h, "Examples:\n") || !strings.Contains(h, "Flags:\n") {
			t.Errorf("%s --help has no examples or flags:\n%s", s.name, h)
		}
	}
}

// Help wraps at $COLUMNS.
func TestHelpWraps(t *testing.T) {
	t.Setenv("COLUMNS", "60")
	var out bytes.Buffer
	Main([]string{"--help"}, Streams{In: strings.NewReader(""), Out: &out, Err: &out}, nil)
	_, flags, _ := strings.Cut(out.String(), "Input flags:")
	for l := range strings.Lines(flags) {
		if len([]rune(strings.TrimSuffix(l, "\n"))) > 60 {
			t.Errorf("line over 60 columns: %q", l)
		}
	}
}

// A sink's flag before the sink's name says where it belongs.
func TestSinkFlagBeforeSink(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fsync", "file", "out"}, "--fsync is a flag of the file sink: put it after 'file'"},
		{[]string{"-k", "exec", "--", "cat"}, "-k is a flag of the exec sink: put it after 'exec'"},
		{[]string{"--gzip", "http", "http://x/"}, "--gzip is a flag of the http sink: put it after 'http'"},
		{[]string{"--insecure", "s3", "s3://b/{seq}"}, "--insecure is a flag of the http and s3 sinks: put it after the sink's name"},
	} {
		_, _, stderr, code := parse(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"version"}, Streams{In: strings.NewReader(""), Out: &out, Err: &errb}, nil)
	if code != exitOK || out.String() != "batchpipe version "+buildVersion()+"\n" {
		t.Errorf("version: exit %d, %q %q", code, out.String(), errb.String())
	}
}

// An example is a command line of a help text's examples.
type example struct {
	line string   // as the help shows it
	args []string // its words after "batchpipe ", without the "< FILE" giving stdin
}

// examples returns the command lines of a help text's examples, leaving
// out comments and lines that do not run batchpipe.
func examples(t *testing.T, help string) []example {
	t.Helper()
	var exs []example
	for line := range strings.Lines(help) {
		line = strings.TrimSpace(line)
		_, cmdline, ok := strings.Cut(line, "batchpipe ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		cmdline, _, _ = strings.Cut(cmdline, " <")
		exs = append(exs, example{line, shellWords(t, cmdline)})
	}
	return exs
}

// Every example of the root's help is a command line batchpipe takes.
func TestRootExamplesParse(t *testing.T) {
	exs := examples(t, rootExamples)
	for _, ex := range exs {
		var errb bytes.Buffer
		o := &options{streams: Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &errb}}
		o.runHook = func(batcher.Config, sinkOpener) error { return nil }
		if code := execute(o, ex.args); code != exitOK {
			t.Errorf("example %q: exit %d: %s", ex.line, code, errb.String())
		}
	}
	if n := len(exs); n < 3 || n > 5 {
		t.Errorf("%d examples, want 3 to 5", n)
	}
}
