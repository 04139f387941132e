package cmd

import (
	"fmt"
	"os"
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
			err = usagef("%s=%q: %v", envName(f.Name), v, serr)
		}
	})
	return err
}

// suggestFlag adds a "did you mean" to an unknown-flag error.
func suggestFlag(c *cobra.Command, err error) error {
	msg := err.Error()
	const prefix = "unknown flag: --"
	if !strings.HasPrefix(msg, prefix) {
		return &usageError{err}
	}
	typed := strings.TrimPrefix(msg, prefix)
	best, bestDist := "", 3 // suggest only close matches
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if d := distance(typed, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	if best == "" {
		return &usageError{err}
	}
	return &usageError{fmt.Errorf("%w (did you mean --%s?)", err, best)}
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
