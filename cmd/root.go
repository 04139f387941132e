package cmd

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time: -ldflags "-X github.com/batchpipe/batchpipe/cmd.version=…";
// else it comes from the build info (see versionOf).
var version = "dev"

// buildVersion is the version batchpipe reports, worked out once.
var buildVersion = sync.OnceValue(func() string {
	info, _ := debug.ReadBuildInfo()
	return versionOf(version, info)
})

// versionOf is the version to report: the one set at build time; else the
// module's, which `go install …@v1.2.3` records; else the commit built from.
func versionOf(set string, info *debug.BuildInfo) string {
	if set != "dev" || info == nil {
		return set
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev == "" {
		return set
	}
	return "dev (" + rev[:min(len(rev), 12)] + modified + ")"
}

// options are the flags every subcommand shares.
type options struct {
	streams Streams
	signals <-chan os.Signal
	flags   *pflag.FlagSet // the root's persistent flags, to ask which were set
	kafka   kafkaOptions

	maxRecords      int
	maxBytes        byteSize
	maxRecordBytes  byteSize
	linger          time.Duration
	null            bool
	delimiter       string
	parallel        int
	retries         int
	backoff         time.Duration
	maxBackoff      time.Duration
	deadLetter      string
	followSymlinks  bool
	shutdownTimeout time.Duration
	quiet           bool
	verbose         bool
	logFormat       string
	progress        string
	statsFile       string
	metricsAddr     string

	partitionBy      string
	fieldDelimiter   string
	maxOpenKeys      int
	maxBufferedBytes byteSize

	sink string // the subcommand's name

	// runHook, in tests, replaces running the pipeline once the flags are
	// checked.
	runHook func(batcher.Config, sinkOpener) error
}

// A usageError is a mistake in what the command line asks: exit 2. Only a
// mistake in the command line itself (a flag, a value) gets the hint to
// read --help; a path the system refuses does not.
type usageError struct {
	err  error
	hint bool
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...), hint: true}
}

// refused is a setting the system turns down at start (a path that cannot
// be written, a command that cannot be run): exit 2, without the hint.
func refused(err error) error { return &usageError{err: err} }

var rootHelp = `batchpipe groups a stream of records into batches and delivers each batch
to a sink: ` + sinkTargets() + `. Records come from
stdin, one per line (or per NUL with -0, or per any byte with -d), or from
Kafka (--topic), and pass through byte for byte. A batch is flushed when it
holds --max-records records, when the next record would take it past
--max-bytes, when its oldest record has waited --linger, and at end of input.

A batch is also flushed on SIGTERM, SIGINT, SIGHUP or SIGQUIT (after which
everything read is delivered; SIGQUIT first writes every goroutine's stack
to stderr) and on SIGUSR1 (pkill -USR1 -x batchpipe, as pidof names every
batchpipe running).

With --topic, records are read from Kafka instead: each record is a message
value (or, with --envelope json, a JSON object holding it and its metadata).
Without --group every partition is read from --from; with --group the
partitions are shared with the group's other members, and an offset is
committed only once every record before it was delivered or dead-lettered,
so a restart after a crash re-reads at most what was in flight. With
--until-end, batchpipe stops at the end offsets seen at start and exits
once everything below them is delivered (and committed); with --until TIME,
at each partition's first record at or after TIME. --from and --until take
RFC 3339 times or times before now (-24h, -90m), resolved once at start, so
--from -48h --until -24h reads the records of that day. The final commit
waits no longer than --kafka-timeout, nor, after a signal, past
--shutdown-timeout; unanswered, it makes the exit status 1, and the records
delivered since the last commit will be read again.

With --partition-by TEMPLATE, each key has a batch open of its own, and
-n, -b and -t apply per key (linger from the key's oldest record); order
within a key is kept at any -j: a key's batches are delivered one after
another, retries included, while keys go in parallel. TEMPLATE holds:
` + batcher.KeyTemplateHelp + `
At most --max-open-keys batches are open (a new key past it flushes the
batch with the oldest record) holding at most --max-buffered-bytes (past
it, the largest is flushed). {key} names the batch in per-batch file
names, http URLs and headers, and exec gets it as BATCHPIPE_KEY.

With --exactly-once (Kafka, with --group), each batch holds one
partition's records, and its offsets are stored with the group's before it
is delivered, so a retry, a restart after a crash or another member forms
exactly the same batch again: {batch_id}, {first_offset} and
{last_offset} name it in per-batch files, URLs and headers.

Every flag can also be set from the environment as BATCHPIPE_<FLAG>, e.g.
BATCHPIPE_MAX_RECORDS=500 for --max-records; a flag on the command line wins.
(Not --topic: BATCHPIPE_TOPIC is what the exec sink tells its commands.)

Exit status:
` + exitTableText() + `

A second signal abandons deliveries in flight and the final Kafka commit:
exit 1; so does a record the signal cut in half, its end still unread.`

const rootExamples = `  # append a growing log to a file in batches of 500, at least every 2s
  tail -F app.log | batchpipe -n 500 -t 2s file batched.log

  # count the lines of each batch of 3 with a command
  seq 10 | batchpipe -n 3 exec -- wc -l

  # NDJSON into ClickHouse, 10000 rows per INSERT
  batchpipe -n 10000 -b 32M http --format ndjson 'http://localhost:8123/?query=INSERT%20INTO%20logs%20FORMAT%20JSONEachRow' < logs.ndjson

  # drain a Kafka topic to a file and exit
  batchpipe --kafka-brokers localhost:9092 --topic orders --until-end -n 1000 file orders.ndjson

  # consume as a group, committing offsets once batches are written
  batchpipe --kafka-brokers localhost:9092 --topic clicks --group loader -n 5000 -t 2s file clicks.log`

func newRoot(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:           "batchpipe [flags] SINK [sink flags]",
		Short:         "Batch a stream of records and deliver every batch",
		Long:          rootHelp,
		Example:       rootExamples,
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(o.streams.In)
	root.SetOut(o.streams.Out)
	root.SetErr(o.streams.Err)
	root.SetFlagErrorFunc(suggestFlag)
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		o.sink = c.Name()
		return flagsFromEnv(c)
	}
	root.Args = cobra.ArbitraryArgs
	root.SuggestionsMinimumDistance = 2
	root.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			if c.ArgsLenAtDash() == 0 && sinkNamed(args[0]) {
				return usagef("sink %q after \"--\": name the sink first, then \"--\" before a command's own arguments (batchpipe -n 100 exec -- wc -l)", args[0])
			}
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				return usagef("unknown sink %q (did you mean %s?)", args[0], s[0])
			}
			return usagef("unknown sink %q (sinks: %s)", args[0], sinkNames())
		}
		return usagef("no sink given (sinks: %s)", sinkNames())
	}

	f := root.PersistentFlags()
	f.SortFlags = false
	root.Flags().SortFlags = false
	o.maxBytes = 1 << 20
	o.maxRecordBytes = 64 << 20
	f.IntVarP(&o.maxRecords, "max-records", "n", 1000, "flush a batch when it holds this many records")
	f.VarP(&o.maxBytes, "max-bytes", "b", "flush before a batch would pass this size, records plus delimiters (64k, 1m, 1.5M, 4MB…; K, M, G are powers of 1024, KB, MB, GB of 1000; at most 4GiB)")
	f.DurationVarP(&o.linger, "linger", "t", time.Second, "flush a batch once its oldest record has waited this long (0: never)")
	f.BoolVarP(&o.null, "null", "0", false, "records end with NUL instead of newline")
	f.StringVarP(&o.delimiter, "delimiter", "d", "", "records end with this single byte (\\n, \\t, \\0 or one character)")
	f.Var(&o.maxRecordBytes, "max-record-bytes", "refuse a record longer than this (it is not delivered; exit 1)")
	f.IntVarP(&o.parallel, "parallel", "j", 1, "batches delivered at once (the kafka sink: 5 unless given)")
	f.IntVar(&o.retries, "retries", 3, "re-deliver a failed batch up to this many times, with backoff")
	f.DurationVar(&o.backoff, "backoff", 500*time.Millisecond, "first retry waits up to this long; doubles each retry, with full jitter (not above --max-backoff)")
	f.DurationVar(&o.maxBackoff, "max-backoff", 30*time.Second, "no retry waits longer than this")
	f.StringVar(&o.partitionBy, "partition-by", "", "one open batch per key, the key rendered from this `TEMPLATE` for each record (its placeholders: man batchpipe); -n, -b and -t apply per key. A record whose key cannot be rendered (a missing field) goes to --dead-letter alone, or counts as undelivered (exit 1)")
	f.StringVar(&o.fieldDelimiter, "field-delimiter", "", "splits a record into columns for {field:N} in --partition-by: one byte, or \\t (default: tab)")
	o.maxBufferedBytes = batcher.DefaultMaxBufferedBytes
	f.IntVar(&o.maxOpenKeys, "max-open-keys", batcher.DefaultMaxOpenKeys, "with --partition-by, a new key past this many open batches flushes the one with the oldest record")
	f.Var(&o.maxBufferedBytes, "max-buffered-bytes", "with --partition-by, past this many bytes in all open batches the largest is flushed")
	f.StringVar(&o.deadLetter, "dead-letter", "", "append batches that still fail after retries to this file, as they were read, and carry on (exit 3); kafka:TOPIC produces them to a Kafka topic, which must exist (batchpipe creates no topics)")
	f.BoolVar(&o.followSymlinks, "follow-symlinks", false, "write through a symbolic link at the output or dead-letter path (refused by default)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "after SIGTERM, SIGINT, SIGHUP or SIGQUIT, abandon deliveries and the final Kafka commit still running after this long (0: wait)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no summary line at exit, no status line (unless --progress always), no metrics address")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log a line for every batch")
	f.StringVar(&o.logFormat, "log-format", "text", "log lines, the summary and errors as text or json (durations with their unit)")
	f.StringVar(&o.progress, "progress", "auto", "status line on stderr: auto (when stderr is a terminal, TERM is not dumb and no -q; output to that same terminal, of exec or file -, erases it, and it comes back once the output has paused for a second), always or never")
	f.StringVar(&o.statsFile, "stats-file", "", "write the run's counters as JSON to this file at start (exit 2 if it cannot be), at exit, whatever the status, and on SIGUSR2")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464)")
	o.kafka.addFlags(f)
	o.flags = f
	setGroup(f, "input", "null", "delimiter", "max-record-bytes")
	setGroup(f, "batching", "max-records", "max-bytes", "linger", "partition-by", "field-delimiter", "max-open-keys", "max-buffered-bytes")
	setGroup(f, "delivery", "parallel", "retries", "backoff", "max-backoff", "dead-letter", "follow-symlinks", "shutdown-timeout")
	setGroup(f, "output", "quiet", "verbose", "log-format", "progress", "stats-file", "metrics-addr")
	f.VisitAll(func(fl *pflag.Flag) {
		if groupOf(fl) == "" {
			setGroup(f, "kafka", fl.Name) // the flags of kafka.addFlags
		}
	})

	for _, s := range sinkCommands {
		root.AddCommand(s.cmd(o))
	}
	root.AddCommand(newVersionCmd())
	root.SetHelpFunc(helpFunc(root.HelpFunc()))
	return root
}

// Main runs batchpipe with args (without the program name) and returns the
// exit status. Signals come from sigs: SIGINT, SIGTERM, SIGHUP and SIGQUIT
// stop it, SIGUSR1 flushes.
func Main(args []string, streams Streams, sigs <-chan os.Signal) int {
	o := &options{streams: streams, signals: sigs}
	err := executeRoot(newRoot(o), args)
	if err == nil {
		return exitOK
	}
	var status exitError
	if errors.As(err, &status) {
		return int(status)
	}
	err = withKafkaHint(err)
	code, hint := errorStatus(err)
	if o.logFormat == "json" {
		jsonLogger(streams.Err).Error(err.Error(), "exit_status", code)
	} else {
		fmt.Fprintf(streams.Err, "batchpipe: %v\n", err)
		if hint {
			fmt.Fprintln(streams.Err, "Run 'batchpipe --help' for usage.")
		}
	}
	var broken *statsFileError
	if !errors.As(err, &broken) {
		// Nothing was read; the file says so rather than keep an earlier
		// run's report.
		var g gauges
		var started *startedError
		if errors.As(err, &started) {
			g = started.g
		}
		o.writeStats(streams.Err, batcher.Stats{}, g, &code, err)
	}
	return code
}

// errorStatus is the exit status err means, and whether the usage hint
// follows its message.
func errorStatus(err error) (code int, hint bool) {
	var ue *usageError
	var unavailable *unavailableError
	var kerr *kafka.Error
	switch {
	case errors.As(err, &unavailable):
		return exitUnavailable, false
	case errors.As(err, &kerr) && kerr.Kind == kafka.Unavailable:
		return exitUnavailable, false
	case errors.As(err, &kerr) && kerr.Kind == kafka.Refused:
		return exitUsage, false
	case errors.As(err, &ue) && !ue.hint:
		return exitUsage, false
	case errors.As(err, &ue):
		return exitUsage, true
	}
	return exitFailed, false
}

// executeRoot runs the command line args. Every mistake cobra finds in it
// comes back as a usageError: a flag's through suggestFlag, which cobra
// asks of the root for every subcommand, and an argument's through
// usageArgs.
func executeRoot(root *cobra.Command, args []string) error {
	root.SetArgs(args)
	// cobra adds these at Execute; added first, their argument checks are
	// wrapped as well. Execute leaves them as they are.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	usageArgs(root)
	c, err := root.ExecuteC()
	if err != nil && c != nil && c.Name() == cobra.ShellCompRequestCmd {
		// The hidden __complete, which cobra adds only when called: it
		// parses no flags and fails only when given nothing to complete.
		return &usageError{err: err, hint: true}
	}
	return err
}

// usageArgs makes the argument checks of c and its subcommands (cobra's
// ExactArgs, NoArgs…) return usage errors.
func usageArgs(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return &usageError{err: err, hint: true}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}
