// --help: what fits a screen. A command's Long is its whole description,
// for the man page; --help shows its first paragraphs, the examples and
// the flags, grouped by purpose and wrapped at the terminal's width.

package cmd

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// groupKey is the flag annotation naming a root flag's group.
const groupKey = "batchpipe/group"

// summaryKey is the command annotation listing the paragraphs of Long
// that --help shows, from 1: "1,3" (the first alone unless given).
const summaryKey = "batchpipe/summary-paragraphs"

// flagGroups are the groups of the root's flags, in the order --help
// shows them.
var flagGroups = []struct{ key, title string }{
	{"input", "Input"},
	{"batching", "Batching"},
	{"kafka", "Kafka source"},
	{"delivery", "Delivery and retries"},
	{"output", "Output and monitoring"},
}

// setGroup puts the flags named in group.
func setGroup(f *pflag.FlagSet, group string, names ...string) {
	for _, n := range names {
		f.SetAnnotation(n, groupKey, []string{group}) // a name missing is caught by TestEveryFlagGrouped
	}
}

// groupOf is the group of f, or "" for none.
func groupOf(f *pflag.Flag) string {
	if g := f.Annotations[groupKey]; len(g) == 1 {
		return g[0]
	}
	return ""
}

// helpWidth is the width to wrap help at: $COLUMNS, else the terminal's,
// else 80; never under 40, and prose no wider than 100 for the eye.
func helpWidth(out io.Writer) int {
	w := 80
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		w = n
	} else if f, ok := out.(*os.File); ok {
		withFd(f, func(fd uintptr) {
			if ws, err := unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
				w = int(ws.Col)
			}
		})
	}
	return max(40, min(w, 100))
}

// helpFunc writes the help of the root and the sinks; other commands
// (completion, version) get cobra's, other.
func helpFunc(other func(*cobra.Command, []string)) func(*cobra.Command, []string) {
	return func(c *cobra.Command, args []string) {
		out := c.OutOrStdout()
		switch {
		case !c.HasParent():
			io.WriteString(out, rootHelpText(c, helpWidth(out)))
		case isSink(c):
			io.WriteString(out, sinkHelpText(c, helpWidth(out)))
		default:
			other(c, args)
		}
	}
}

// isSink reports whether c is a sink's subcommand.
func isSink(c *cobra.Command) bool {
	return c.Parent() == c.Root() && sinkNamed(c.Name())
}

// helpSummary is the paragraphs of c's Long that --help shows.
func helpSummary(c *cobra.Command) string {
	list, ok := c.Annotations[summaryKey]
	if !ok {
		list = "1"
	}
	paras := strings.Split(c.Long, "\n\n")
	var shown []string
	for _, s := range strings.Split(list, ",") {
		if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= len(paras) {
			shown = append(shown, paras[n-1])
		}
	}
	return strings.Join(shown, "\n\n")
}

func rootHelpText(root *cobra.Command, width int) string {
	var b strings.Builder
	b.WriteString(reflow(helpSummary(root), width) + "\n\n")
	b.WriteString("Usage:\n  batchpipe [flags] SINK [sink flags] ARGS\n  batchpipe SINK --help     the sink's flags\n  batchpipe version\n\n")
	b.WriteString("Sinks:\n")
	for _, s := range sinkCommands {
		short := ""
		if c, _, err := root.Find([]string{s.name}); err == nil {
			short = c.Short
		}
		b.WriteString(hang("  "+s.name, short, 10, width))
	}
	b.WriteString("\nExamples:\n" + root.Example + "\n")
	flags := root.PersistentFlags()
	var all []*pflag.Flag
	flags.VisitAll(func(f *pflag.Flag) { all = append(all, f) })
	col := flagColumn(all, width)
	for _, g := range flagGroups {
		var fs []*pflag.Flag
		flags.VisitAll(func(f *pflag.Flag) {
			if groupOf(f) == g.key {
				fs = append(fs, f)
			}
		})
		b.WriteString("\n" + g.title + " flags:\n" + flagLines(fs, col, width))
	}
	b.WriteString("\n" + reflow(rootFooter, width) + "\n")
	b.WriteString("\nExit status:\n" + exitTableShort(width))
	b.WriteString("\n" + reflow("The whole description: man batchpipe, or docs/ in the source.", width) + "\n")
	return b.String()
}

// rootFooter is what --help says after the flags.
const rootFooter = `Every flag can also be set as BATCHPIPE_<FLAG> (BATCHPIPE_MAX_RECORDS=500), but --topic; a flag given wins.
SIGINT, SIGTERM, SIGHUP and SIGQUIT stop reading and deliver what was read; a second one abandons it. SIGUSR1 flushes the open batches; SIGUSR2 writes --stats-file.`

func sinkHelpText(c *cobra.Command, width int) string {
	var b strings.Builder
	b.WriteString(reflow(helpSummary(c), width) + "\n\n")
	b.WriteString("Usage:\n  batchpipe [global flags] " + c.Use + "\n")
	if c.Example != "" {
		b.WriteString("\nExamples:\n" + c.Example + "\n")
	}
	var fs []*pflag.Flag
	inherited := c.InheritedFlags()
	c.Flags().SortFlags = false // as declared: the common ones first
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && inherited.Lookup(f.Name) == nil {
			fs = append(fs, f)
		}
	})
	if len(fs) > 0 {
		b.WriteString("\nFlags:\n" + flagLines(fs, flagColumn(fs, width), width))
	}
	b.WriteString("\n" + reflow(fmt.Sprintf("The global flags (-n, -b, -t, -j, --retries, --dead-letter, Kafka, …) go before '%s': see batchpipe --help. The whole description: man batchpipe-%s.", c.Name(), c.Name()), width) + "\n")
	return b.String()
}

// goTypes are pflag's names of value types that mean nothing to a user.
var goTypes = map[string]string{"int32Slice": "ints", "int64Slice": "ints", "stringArray": "string"}

// flagName is f as --help lists it: "  -n, --max-records int".
func flagName(f *pflag.Flag) string {
	s := "      --" + f.Name
	if f.Shorthand != "" {
		s = "  -" + f.Shorthand + ", --" + f.Name
	}
	v, _ := pflag.UnquoteUsage(f)
	if t, ok := goTypes[v]; ok {
		v = t
	}
	if v != "" {
		s += " " + v
	}
	return s
}

// flagColumn is where the descriptions of fs start: past the longest
// name, but no further than 2/5 of width.
func flagColumn(fs []*pflag.Flag, width int) int {
	col := 0
	for _, f := range fs {
		col = max(col, len(flagName(f))+2)
	}
	return min(col, max(width*2/5, 24))
}

// flagLines lists fs, each flag's description beside it, from col, and
// wrapped to width.
func flagLines(fs []*pflag.Flag, col, width int) string {
	var b strings.Builder
	for _, f := range fs {
		_, usage := pflag.UnquoteUsage(f)
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" && d != "0s" {
			if f.Value.Type() == "string" {
				d = strconv.Quote(d)
			}
			usage += " (default " + d + ")"
		}
		b.WriteString(hang(flagName(f), usage, col, width))
	}
	return b.String()
}

// hang writes text wrapped to width beside label, its lines indented to
// col; on a line of its own below a label that reaches col.
func hang(label, text string, col, width int) string {
	var b strings.Builder
	line := label
	if label != "" && len(label)+2 > col {
		b.WriteString(label + "\n")
		line = ""
	}
	line += strings.Repeat(" ", col-len(line))
	start := true
	for _, w := range strings.Fields(text) {
		if !start && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line, start = strings.Repeat(" ", col), true
		}
		if !start {
			line += " "
		}
		line, start = line+w, false
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
	return b.String()
}

// reflow wraps text's prose at width: runs of lines that start with a
// letter are joined and wrapped again; indented lines (lists, examples)
// are kept as written.
func reflow(text string, width int) string {
	var b, run strings.Builder
	flush := func() {
		if run.Len() > 0 {
			b.WriteString(hang("", run.String(), 0, width))
			run.Reset()
		}
	}
	for l := range strings.Lines(text) {
		l = strings.TrimRight(l, "\n")
		switch {
		case l == "":
			flush()
			b.WriteString("\n")
		case l[0] == ' ':
			flush()
			b.WriteString(l + "\n")
		default:
			run.WriteString(l + " ")
		}
	}
	flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// sinkOfFlag names the sinks that have the flag called name (a long name,
// or one letter), for a sink flag given before the sink.
func sinkOfFlag(root *cobra.Command, name string) []string {
	var owners []string
	for _, s := range sinkCommands {
		c, _, err := root.Find([]string{s.name})
		if err != nil {
			continue
		}
		f := c.LocalNonPersistentFlags()
		if (len(name) == 1 && f.ShorthandLookup(name) != nil) || (len(name) > 1 && f.Lookup(name) != nil) {
			owners = append(owners, s.name)
		}
	}
	return owners
}

// newVersionCmd is batchpipe version, as --version.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print batchpipe's version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(c.OutOrStdout(), "batchpipe version %s\n", buildVersion())
			return err
		},
	}
}
