package cmd

import (
	"os"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/spf13/cobra"
)

const execHelp = `Run CMD once per batch, with the batch on its standard input: the records
joined and terminated by the delimiter, exactly as read. No shell is involved
unless CMD is one (sh -c '…'). CMD is looked up in $PATH at start; if it
cannot be run, batchpipe exits 2 before reading any input.

A batch is delivered when CMD exits with status 0, whether or not it read
all its input. A non-zero status, death by a signal or a run longer than
--timeout is a failure: the batch is retried (--retries), then dead-lettered
(--dead-letter) or the run stops. The failure quotes the first line of CMD's
stderr that looks like an error (ERROR:, FATAL:, error:, panic:…, as psql's
ERROR: before its CONTEXT:), else its first and last lines, as written (but
control bytes, as \xNN).

Each run's environment is batchpipe's, less the variables that may hold its
secrets (BATCHPIPE_KAFKA_PASSWORD, BATCHPIPE_HEADER, any BATCHPIPE_ name with
PASSWORD, SECRET or TOKEN in it), plus:
  BATCHPIPE_SEQ       batch number: 1, 2, 3…
  BATCHPIPE_RECORDS   records given to the command
  BATCHPIPE_BYTES     their bytes, one delimiter each included
  BATCHPIPE_REASON    why the batch was flushed: size, bytes, linger, eof,
                      signal or flush
  BATCHPIPE_ATTEMPT   delivery attempt, from 1
  BATCHPIPE_RUN       the run's ID, as {run} of file --per-batch: its start
                      time and a random suffix, so that names made from it
                      and BATCHPIPE_SEQ never repeat another run's
and, when every record comes from one Kafka partition, BATCHPIPE_TOPIC,
BATCHPIPE_PARTITION, BATCHPIPE_FIRST_OFFSET, BATCHPIPE_LAST_OFFSET and
BATCHPIPE_BATCH_ID (TOPIC-PARTITION-FIRST-LAST: the same batch has the same
id after a crash with --exactly-once); with --partition-by, BATCHPIPE_KEY,
the batch's key ('%' and NUL as %25 and %00).

Output: CMD's stdout goes to batchpipe's stdout and its stderr to stderr,
failed attempts' included. With -j 1 stdout passes straight through. With
-j above 1 each run's stdout is held until the run ends and then written in
one piece (256 KiB per run in memory, the rest in a temporary file), and
stderr is passed on in whole lines, so runs never mix within a line.
Without --keep-order, outputs come in the order runs end. --keep-order
writes them in batch order, as file does its batches; it is not the
default, as a run then waits to start while its batch is 2×-j or more
batches ahead of the oldest batch whose output has not been written yet,
so one slow run holds up the rest. Output that cannot be written fails
its batch, without retries, however the run went; with --keep-order, output
written only once its batch is done is instead counted and reported at exit,
and later batches fail. A closed pipe (batchpipe exec … | head -1) stops the
run at once, exit 141, as cat; a stdout closed at start (>&-) is exit 2.

--args passes the records as arguments instead (stdin is /dev/null). They
are appended to ARGS; or, if some of ARGS hold {}, each of those is repeated
once per record with {} replaced by it:
  exec --args -- cp -t /backup         →  cp -t /backup R1 R2 R3
  exec --args -- tar -cf x.tar -- {}   →  tar -cf x.tar -- R1 R2 R3
  exec --args -- echo id={}            →  echo id=R1 id=R2 id=R3
With -n 1 this is xargs -I {}. Batches are also cut so the command line
stays within the system's limit (a quarter of the stack limit, less the
environment). A record that cannot be an argument (one holding a NUL byte,
or longer than 128 KiB) is rejected on its own: dead-lettered or counted as
undelivered, while the rest of its batch runs.

Each run has a process group of its own, so a terminal's Ctrl-C reaches only
batchpipe. On --timeout, the group gets SIGTERM, then SIGKILL after
--kill-after. On the first SIGINT, SIGTERM, SIGHUP or SIGQUIT running
commands are left to finish; past --shutdown-timeout they get SIGTERM and,
--kill-after later, SIGKILL (one that exits 0 after the SIGTERM delivered
its batch); a second signal SIGKILLs them at once. batchpipe exits only
once they are gone. A command that exits 0 while processes it left in the
background still hold its output open is waited for --kill-after, at any
-j, then the rest of its group is SIGKILLed; the batch is delivered. Should
batchpipe itself be killed (kill -9), a guardian process it starts with the
first command (batchpipe-guard in ps) SIGKILLs the groups still running.`

const execExamples = `  # count the lines of each batch of 3
  seq 10 | batchpipe -n 3 exec -- wc -l

  # what each run is told
  seq 5 | batchpipe -n 2 exec -- sh -c 'echo "batch $BATCHPIPE_SEQ: $BATCHPIPE_RECORDS records ($BATCHPIPE_REASON)"'

  # 4 at once, output in input order
  seq 100 | batchpipe -n 10 -j 4 exec --keep-order -- paste -sd+

  # xargs style: records become arguments
  printf '%s\n' a b c d e | batchpipe -n 2 exec --args -- echo files:

  # batch 2 fails every time: retried once, then its records go to failed.txt (exit 3)
  seq 6 | batchpipe -n 2 --retries 1 --backoff 10ms --dead-letter failed.txt exec --timeout 10s -- sh -c 'test $BATCHPIPE_SEQ != 2'`

// execSpec is the exec sink's settings.
type execSpec struct {
	o         *options
	argv      []string
	args      bool
	keepOrder bool
	timeout   time.Duration
	killAfter time.Duration
	format    sinks.Format
}

func (s *execSpec) validate(o *options) error {
	switch {
	case len(s.argv) == 0:
		return usagef("exec: no command given: batchpipe exec [flags] -- CMD [ARGS...]")
	case s.timeout < 0:
		return usagef("exec: --timeout must not be negative, not %v", s.timeout)
	case s.args && s.format != sinks.Lines:
		return usagef("exec: --format is for stdin; with --args records are arguments")
	case s.killAfter <= 0:
		return usagef("exec: --kill-after must be positive, not %v", s.killAfter)
	}
	return nil
}

func (s *execSpec) open(env sinkEnv) (batcher.Sink, error) {
	if err := s.o.checkStdout(); err != nil {
		return nil, err
	}
	return sinks.NewExec(sinks.ExecConfig{
		Argv:      s.argv,
		Args:      s.args,
		Format:    s.format,
		Timeout:   s.timeout,
		KillAfter: s.killAfter,
		Parallel:  s.o.parallel,
		KeepOrder: s.keepOrder,
		Stdout:    env.out,
		Stderr:    env.diag,
		Env:       childEnv(os.Environ()),
		Logger:    env.log,
	})
}

func newExecCmd(o *options) *cobra.Command {
	s := &execSpec{o: o}
	c := &cobra.Command{
		Use:         "exec [flags] -- CMD [ARGS...]",
		Short:       "Run a command per batch, the batch on its stdin or as its arguments",
		Long:        execHelp,
		Example:     execExamples,
		Annotations: map[string]string{summaryKey: "1,3"},
		RunE: func(c *cobra.Command, argv []string) error {
			s.argv = argv
			return o.run(s)
		},
	}
	f := c.Flags()
	// Everything from CMD on is the command's, even without --.
	f.SetInterspersed(false)
	f.Var(&s.format, "format", "stdin body: lines (records as read), ndjson or json; records a format rejects go alone to --dead-letter")
	f.BoolVar(&s.args, "args", false, "pass records as arguments (appended, or in place of {}) instead of on stdin")
	f.BoolVarP(&s.keepOrder, "keep-order", "k", false, "with -j above 1, write the runs' output in batch order")
	f.DurationVar(&s.timeout, "timeout", 0, "fail a run that takes longer than this (0: no limit)")
	f.DurationVar(&s.killAfter, "kill-after", 5*time.Second, "SIGKILL a run this long after SIGTERM (timeout, shutdown), or after it exits leaving its output held open")
	return c
}
