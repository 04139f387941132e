package cmd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/monitor"
)

// gauges are what the stats file adds to the counters, once the run has
// opened what gives them.
type gauges struct {
	kafkaLag     func() map[string]int64   // the lag by topic, reading Kafka
	foundInPlace func() int64              // the s3 sink's batches stored already
	kafkaGroup   func() monitor.GroupState // the member's state with --group
}

// A startedError is an error of a run that got as far as opening Kafka or
// a sink, with the gauges the stats file then reports.
type startedError struct {
	err error
	g   gauges
}

func (e *startedError) Error() string { return e.err.Error() }
func (e *startedError) Unwrap() error { return e.err }

// A statsFileError is a stats file that cannot be written: the run does
// not try again at exit.
type statsFileError struct{ err error }

func (e *statsFileError) Error() string { return e.err.Error() }
func (e *statsFileError) Unwrap() error { return e.err }

// writeStats writes the stats file, if one was asked for; status is nil
// while the run goes on.
func (o *options) writeStats(w io.Writer, st batcher.Stats, g gauges, status *int, runErr error) {
	if o.statsFile == "" {
		return
	}
	r := monitor.NewReport(o.sink, st)
	if g.kafkaLag != nil {
		r.Lag = g.kafkaLag()
	}
	if g.foundInPlace != nil {
		r.BatchesFoundInPlace = g.foundInPlace()
	}
	if g.kafkaGroup != nil {
		gs := g.kafkaGroup()
		gs.PausedSecs = gs.Paused.Seconds()
		r.Group = &gs
	}
	r.Running = status == nil
	r.ExitStatus = status
	if runErr != nil {
		r.Error = runErr.Error()
	}
	if err := monitor.WriteFile(o.statsFile, r); err != nil {
		fmt.Fprintf(w, "batchpipe: %v\n", err)
	}
}

// exitStatus decides the exit status: the one place that does.
func exitStatus(st batcher.Stats, runErr error, sig os.Signal) int {
	switch {
	case brokenPipe(runErr):
		return exitBrokenPipe
	case st.Undelivered > 0 || runErr != nil:
		return exitFailed
	case st.DeadLettered > 0:
		// Before the signal: the dead letters wait for a replay.
		return exitDeadLettered
	case sig != nil:
		if s, ok := sig.(syscall.Signal); ok {
			return exitSignal + int(s)
		}
		return exitFailed
	}
	return exitOK
}

// report prints the summary and what went wrong, writes the stats file, and
// returns the exit status as an error (nil for 0). Lines in extra (the
// Kafka summary) follow the summary line.
func (o *options) report(st batcher.Stats, g gauges, runErr error, sig os.Signal, extra ...string) error {
	w := o.streams.Err
	code := exitStatus(st, runErr, sig)
	if code == exitBrokenPipe {
		// Like cat: the reader left, so stop, and say no more than a line.
		fmt.Fprintf(w, "batchpipe: stdout: broken pipe, %d of %d records not delivered\n", st.Undelivered+st.InFlight, st.Read)
		o.writeStats(w, st, g, &code, runErr)
		return exitError(code)
	}
	if o.logFormat == "json" {
		o.reportJSON(st, runErr, code, extra)
		o.writeStats(w, st, g, &code, runErr)
		if code == exitOK {
			return nil
		}
		return exitError(code)
	}
	if !o.quiet {
		fmt.Fprintln(w, summary(st))
		for _, l := range extra {
			fmt.Fprintf(w, "batchpipe: %s\n", l)
		}
	}
	switch code {
	case exitFailed:
		if st.Undelivered > 0 {
			fmt.Fprintf(w, "batchpipe: %d of %s not delivered\n", st.Undelivered, count(st.Read, "record", "records"))
		}
		if runErr != nil {
			// Joined errors come a line each, each named as batchpipe's.
			for l := range strings.SplitSeq(runErr.Error(), "\n") {
				fmt.Fprintf(w, "batchpipe: %s\n", l)
			}
		}
	case exitDeadLettered:
		fmt.Fprintf(w, "batchpipe: completed, %s dead-lettered to %s\n", count(st.DeadLettered, "record", "records"), o.deadLetter)
	}
	o.writeStats(w, st, g, &code, runErr)
	if code == exitOK {
		return nil
	}
	return exitError(code)
}

// brokenPipe reports whether the run stopped because its output was a pipe
// whose reader left.
func brokenPipe(err error) bool {
	return batcher.IsFatal(err) && errors.Is(err, syscall.EPIPE)
}

// reportJSON is report for --log-format json: the summary and what went
// wrong as JSON log records.
func (o *options) reportJSON(st batcher.Stats, runErr error, code int, extra []string) {
	log := jsonLogger(o.streams.Err)
	if !o.quiet {
		args := []any{"records_read", st.Read, "bytes_read", st.BytesRead, "elapsed", st.Elapsed,
			"records_delivered", st.Delivered, "batches_delivered", st.BatchesDone, "batches_partly_delivered", st.BatchesPartly,
			"flush_reasons", st.Reasons, "records_dead_lettered", st.DeadLettered, "records_undelivered", st.Undelivered,
			"retries", st.Retries, "exit_status", code}
		if s := st.Elapsed.Seconds(); s > 0 {
			args = append(args, "records_per_second", float64(st.Read)/s)
		}
		if len(extra) > 0 {
			args = append(args, "kafka", strings.Join(extra, "; "))
		}
		log.Info("summary", args...)
	}
	switch code {
	case exitFailed:
		args := []any{"records_undelivered", st.Undelivered, "records_read", st.Read, "exit_status", code}
		if runErr != nil {
			args = append(args, "error", runErr.Error())
		}
		log.Error("records not delivered", args...)
	case exitDeadLettered:
		log.Warn("completed, records dead-lettered", "records_dead_lettered", st.DeadLettered, "dead_letter", o.deadLetter, "exit_status", code)
	}
}

// jsonLogger logs JSON to w at every level, durations with their unit
// ("1.5s"): slog would write them as a bare count of nanoseconds.
func jsonLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: durationUnits}))
}

// durationUnits writes a duration as text with its unit.
func durationUnits(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// summary is the line printed at exit.
func summary(st batcher.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "batchpipe: %s (%s) read in %s", count(st.Read, "record", "records"), humanBytes(st.BytesRead), st.Elapsed.Round(time.Millisecond))
	if s := st.Elapsed.Seconds(); s > 0 && st.Read > 0 {
		fmt.Fprintf(&b, " (%s records/s)", monitor.Count(int64(float64(st.Read)/s)))
	}
	// A batch of which part was delivered counts: "40 delivered in 0
	// batches" would say nothing arrived whole or not.
	fmt.Fprintf(&b, ", %d delivered in %s", st.Delivered, count(st.BatchesDone+st.BatchesPartly, "batch", "batches"))
	var notes []string
	if st.BatchesPartly > 0 {
		notes = append(notes, fmt.Sprintf("%d in part", st.BatchesPartly))
	}
	var reasons []string
	for _, r := range []string{"size", "bytes", "linger", "eof", "signal", "flush", "keys", "buffered", "planned", "key"} {
		if n := st.Reasons[r]; n > 0 {
			reasons = append(reasons, fmt.Sprintf("%d %s", n, r))
		}
	}
	if len(reasons) > 0 {
		notes = append(notes, "flushed: "+strings.Join(reasons, ", "))
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
	}
	fmt.Fprintf(&b, ", %d dead-lettered, %d undelivered, %s", st.DeadLettered, st.Undelivered, count(st.Retries, "retry", "retries"))
	if st.Reformed > 0 {
		fmt.Fprintf(&b, ", %s re-formed as planned before", count(st.Reformed, "batch", "batches"))
	}
	if st.Withdrawn > 0 {
		// Records of Kafka partitions a rebalance took, or of a planned
		// batch a stop cut short: read again, by their new owner or the
		// next run.
		fmt.Fprintf(&b, ", %d withdrawn, to be read again (not committed)", st.Withdrawn)
	}
	return b.String()
}

// count says "1 batch", "2 batches".
func count(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
