package cmd

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable that sets a flag: --max-records is
// BATCHPIPE_MAX_RECORDS.
func envName(flag string) string {
	return "BATCHPIPE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// notFromEnv are flags whose variable means something else: the exec sink
// gives its commands BATCHPIPE_TOPIC, and a batchpipe run by one must not
// take it for --topic and read Kafka instead of its stdin.
var notFromEnv = map[string]bool{"help": true, "version": true, "topic": true}

// fromEnvKey marks a flag set from the environment, not the command line.
const fromEnvKey = "batchpipe/from-env"

// givenOnCommandLine reports whether the flag was given on the command
// line: a variable set for every run (BATCHPIPE_KAFKA_BROKERS in a
// profile) does not count.
func givenOnCommandLine(f *pflag.Flag) bool {
	return f != nil && f.Changed && len(f.Annotations[fromEnvKey]) == 0
}

// flagsFromEnv sets every flag not given on the command line from its
// environment variable, if set: flags win over the environment.
func flagsFromEnv(c *cobra.Command) error {
	var err error
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || notFromEnv[f.Name] {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if serr := c.Flags().Set(f.Name, v); serr != nil {
			err = usagef("%s=%q: %v", envName(f.Name), v, plainError(serr))
		}
		c.Flags().SetAnnotation(f.Name, fromEnvKey, []string{"true"})
	})
	return err
}

// goInternals are the words of Go's parsers that pflag passes on, and
// what they mean to someone typing a command.
var goInternals = []struct {
	re   *regexp.Regexp
	says string
}{
	{regexp.MustCompile(`strconv\.ParseBool: parsing "[^"]*": invalid syntax`), "not true or false"},
	{regexp.MustCompile(`strconv\.Parse(Int|Uint): parsing "[^"]*": invalid syntax`), "not a whole number"},
	{regexp.MustCompile(`strconv\.Parse\w+: parsing "[^"]*": invalid syntax`), "not a number"},
	{regexp.MustCompile(`strconv\.Parse\w+: parsing "[^"]*": value out of range`), "out of range"},
	{regexp.MustCompile(`time: missing unit in duration "[^"]*"`), "a duration needs a unit (500ms, 2s, 1m30s, 1h)"},
	{regexp.MustCompile(`time: (invalid duration|unknown unit "[^"]*" in duration) "[^"]*"`), "not a duration (500ms, 2s, 1m30s, 1h)"},
}

// plainError rewrites what Go's parsers said in err (strconv.ParseInt:
// parsing "x": invalid syntax) in words for people.
func plainError(err error) error {
	msg := err.Error()
	for _, g := range goInternals {
		msg = g.re.ReplaceAllString(msg, g.says)
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// suggestFlag adds a "did you mean" to an unknown-flag error, or says
// which sink a flag given before the sink's name belongs to.
func suggestFlag(c *cobra.Command, err error) error {
	err = plainError(err)
	msg := err.Error()
	if name, dashes, ok := unknownFlag(msg); ok && c == c.Root() {
		if owners := sinkOfFlag(c, name); len(owners) == 1 {
			return usagef("%s%s is a flag of the %s sink: put it after '%s'", dashes, name, owners[0], owners[0])
		} else if len(owners) > 1 {
			return usagef("%s%s is a flag of the %s sinks: put it after the sink's name", dashes, name, orList(owners, "and"))
		}
	}
	const prefix = "unknown flag: --"
	if !strings.HasPrefix(msg, prefix) {
		return &usageError{err: err, hint: true}
	}
	typed := strings.TrimPrefix(msg, prefix)
	best, bestDist := "", 3 // suggest only close matches
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if d := distance(typed, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	if best == "" {
		return &usageError{err: err, hint: true}
	}
	return &usageError{err: fmt.Errorf("%w (did you mean --%s?)", err, best), hint: true}
}

// unknownFlag is the flag pflag's error msg names, without dashes: "unknown
// flag: --per-batch" or "unknown shorthand flag: 'X' in -X".
func unknownFlag(msg string) (name, dashes string, ok bool) {
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		return name, "--", true
	}
	if rest, ok := strings.CutPrefix(msg, "unknown shorthand flag: '"); ok && len(rest) > 1 && rest[1] == '\'' {
		return rest[:1], "-", true
	}
	return "", "", false
}

// orList is "a, b and c" (or with "or").
func orList(items []string, and string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " " + and + " " + items[len(items)-1]
}

// distance is the Levenshtein edit distance, with a swap of two adjacent
// letters counted as one edit.
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// childEnv is the environment batchpipe gives the commands it runs: its
// own, without the variables that may hold a secret of its own, which
// those commands have no use for: the Kafka password, and HTTP headers
// (tokens), or any BATCHPIPE_ variable named for a password, secret or
// token.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !secretEnv(name) {
			out = append(out, kv)
		}
	}
	return out
}

func secretEnv(name string) bool {
	if !strings.HasPrefix(name, "BATCHPIPE_") {
		return false
	}
	if name == envPassword || name == envName("header") {
		return true
	}
	for _, w := range []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}
