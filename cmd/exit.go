package cmd

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// Exit statuses. exitTable says what each means.
const (
	exitOK           = 0
	exitFailed       = 1 // records not delivered
	exitUsage        = 2
	exitDeadLettered = 3 // completed, some records dead-lettered
	// exitUnavailable is sysexits' EX_UNAVAILABLE: something the run needs
	// (brokers, a topic, the metrics port) is not there at start. Not
	// EX_TEMPFAIL (75), which promises that a retry will do: a missing
	// topic waits for someone to create it.
	exitUnavailable = 69
	exitSignal      = 128             // + the signal's number, after a clean drain
	exitBrokenPipe  = exitSignal + 13 // stdout's reader left (SIGPIPE), as cat
)

// exitError carries an exit status whose message has already been printed.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// An unavailableError is a dependency missing at start: exit 69, no usage
// hint, since the command line may well be right.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// An exitRow is a line of the exit-status table: statuses and what they
// mean, in Markdown (code in backquotes).
type exitRow struct {
	codes   []int
	meaning string
	short   string // for --help; "" adds nothing to the row above
}

// exitTable is the one list of the exit statuses: --help renders it as
// text and the README holds it as a Markdown table (TestREADMEExitTable
// checks that it says the same).
var exitTable = []exitRow{
	{[]int{exitOK}, "every record read was delivered", "every record read was delivered"},
	{[]int{exitFailed}, "records were not delivered: the message says how many, and where the first failure was; or, with `--group`, the final commit was not answered in time (those records will be read again)", "records not delivered (the message says how many), or the final Kafka commit unanswered"},
	{[]int{exitUsage}, "usage error, nothing read: a bad flag or value (followed by `Run 'batchpipe --help' for usage.`), or a setting refused at start: an output, `--stats-file` or dead letter that cannot be written, a command that cannot be run, a consumer group refusing the join (a session timeout out of its range, a missing permission, another `--rebalance-strategy`), wrong Kafka credentials, an S3 bucket refusing the credentials; also a static member fenced by a newer one started with its `--group-instance-id`", "usage error, or a setting refused at start (an output, a command, credentials); nothing read"},
	{[]int{exitUsage}, "also: stdout closed at start (`>&-`) while the output goes there (`file -`, `exec`)", ""},
	{[]int{exitDeadLettered}, "completed (or stopped by a signal), but records were dead-lettered (`--dead-letter`)", "completed, but records were dead-lettered"},
	{[]int{exitUnavailable}, "a dependency unavailable at start, nothing read (`EX_UNAVAILABLE` of sysexits.h): Kafka brokers unreachable, a topic or partition missing, an S3 bucket missing or its store unreachable, the `--metrics-addr` port taken. A cron wrapper can tell \"fix the command\" (2) from \"something is down\" (69). Not `EX_TEMPFAIL` (75): that promises a later retry will do, and a missing topic waits for someone to create it", "a dependency unavailable at start (brokers, a topic, a bucket, the metrics port); nothing read"},
	{[]int{exitSignal + int(syscall.SIGHUP), exitSignal + int(syscall.SIGINT), exitSignal + int(syscall.SIGQUIT), exitSignal + int(syscall.SIGTERM)},
		"stopped by SIGHUP, SIGINT, SIGQUIT or SIGTERM (128 + its number) after delivering everything read, or before reading, while opening an output that waits (a FIFO with no reader) or connecting to Kafka. SIGHUP is a closed terminal or ssh session (unless `nohup` left it ignored); SIGQUIT first writes every goroutine's stack to stderr, as Go does, but then drains rather than exit 2", "stopped by SIGHUP, SIGINT, SIGQUIT or SIGTERM, after delivering everything read"},
	{[]int{exitBrokenPipe}, "stdout is a pipe whose reader left (`batchpipe file - | head -1`): stopped at once, as `cat` does, with one line saying how many records were not delivered", "stdout's reader left (a broken pipe), as cat"},
}

func (r exitRow) codeList() string {
	s := make([]string, len(r.codes))
	for i, c := range r.codes {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ", ")
}

// exitTableMarkdown is exitTable as the README's table.
func exitTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| status | meaning |\n| --- | --- |\n")
	for _, r := range exitTable {
		fmt.Fprintf(&b, "| %s | %s |\n", r.codeList(), strings.ReplaceAll(r.meaning, "|", `\|`))
	}
	return b.String()
}

// exitTableText is exitTable for --help: the meanings wrapped beside their
// statuses, without Markdown's backquotes.
func exitTableText() string {
	const indent, width = 7, 78
	var b strings.Builder
	for _, r := range exitTable {
		line := "  " + r.codeList()
		line += strings.Repeat(" ", max(indent-len(line), 2))
		for _, w := range strings.Fields(plainText(r.meaning)) {
			if len(line)+1+len(w) > width && len(strings.TrimSpace(line)) > 0 && !strings.HasSuffix(line, "  ") {
				b.WriteString(line + "\n")
				line = strings.Repeat(" ", indent)
			}
			if !strings.HasSuffix(line, " ") {
				line += " "
			}
			line += w
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// plainText is Markdown's code spans as text: quoted when they hold a
// space, bare otherwise.
func plainText(md string) string {
	parts := strings.Split(md, "`")
	for i := 1; i < len(parts); i += 2 {
		if strings.Contains(parts[i], " ") {
			parts[i] = `"` + parts[i] + `"`
		}
	}
	return strings.Join(parts, "")
}

// exitTableShort is exitTable for --help: a line or two per status.
func exitTableShort(width int) string {
	var b strings.Builder
	for _, r := range exitTable {
		if r.short != "" {
			b.WriteString(hang("  "+r.codeList(), r.short, 7, width))
		}
	}
	return b.String()
}
