package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/batchpipe/batchpipe/sources"
)

// maxParallel bounds -j: more workers than this buys nothing but memory.
const maxParallel = 1024

// config checks the shared flags and turns them into a pipeline config.
func (o *options) config() (batcher.Config, error) {
	var cfg batcher.Config
	switch {
	case o.maxRecords < 1:
		return cfg, usagef("--max-records must be at least 1, not %d", o.maxRecords)
	case o.maxBytes < 1:
		return cfg, usagef("--max-bytes must be at least 1 byte")
	case o.maxRecordBytes < 1:
		return cfg, usagef("--max-record-bytes must be at least 1 byte")
	case o.linger < 0:
		return cfg, usagef("--linger must not be negative, not %v", o.linger)
	case o.parallel < 1 || o.parallel > maxParallel:
		return cfg, usagef("--parallel must be between 1 and %d, not %d", maxParallel, o.parallel)
	case o.retries < 0:
		return cfg, usagef("--retries must not be negative, not %d", o.retries)
	case o.backoff < 0 || o.maxBackoff < 0:
		return cfg, usagef("--backoff and --max-backoff must not be negative")
	case o.shutdownTimeout < 0:
		return cfg, usagef("--shutdown-timeout must not be negative, not %v", o.shutdownTimeout)
	}
	delim, err := o.delim()
	if err != nil {
		return cfg, err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	return batcher.Config{
		MaxRecords:      o.maxRecords,
		MaxBytes:        int(o.maxBytes),
		Linger:          o.linger,
		Delim:           delim,
		Parallel:        o.parallel,
		Retries:         o.retries,
		Backoff:         o.backoff,
		MaxBackoff:      o.maxBackoff,
		ShutdownTimeout: o.shutdownTimeout,
		Logger:          slog.New(slog.NewTextHandler(o.streams.Err, &slog.HandlerOptions{Level: level})),
	}, nil
}

func (o *options) delim() (byte, error) {
	if o.null && o.delimiter != "" {
		return 0, usagef("-0 and -d both set the delimiter: give one")
	}
	if o.null {
		return 0, nil
	}
	switch o.delimiter {
	case "", `\n`:
		return '\n', nil
	case `\t`:
		return '\t', nil
	case `\0`:
		return 0, nil
	case `\r`:
		return '\r', nil
	}
	if len(o.delimiter) != 1 {
		return 0, usagef("-d takes a single byte (or \\n, \\t, \\r, \\0), not %q", o.delimiter)
	}
	return o.delimiter[0], nil
}

// run checks the flags, opens the sink, and runs the pipeline from stdin to
// it. Signals: the first SIGINT/SIGTERM stops reading and drains, a second
// abandons what is in flight; SIGUSR1 flushes the open batch.
func (o *options) run(openSink func() (batcher.Sink, error)) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	if o.runHook != nil {
		return o.runHook(cfg, openSink)
	}
	if o.deadLetter != "" {
		dl, err := sinks.OpenFile(o.deadLetter, true)
		if err != nil {
			return &usageError{fmt.Errorf("dead letter: %w", err)}
		}
		defer dl.Close()
		cfg.DeadLetter = dl
	}
	sink, err := openSink()
	if err != nil {
		return &usageError{err}
	}
	p := &batcher.Pipeline{
		Source: &sources.Stream{R: o.streams.In, Delim: cfg.Delim, MaxRecordBytes: int(o.maxRecordBytes)},
		Sink:   sink,
		Config: cfg,
	}

	stop := make(chan struct{})
	flush := make(chan struct{}, 1)
	p.Stop, p.Flush = stop, flush
	ctx, abandon := context.WithCancelCause(context.Background())
	defer abandon(nil)
	stopped := make(chan os.Signal, 1) // the signal that stopped the run
	done := make(chan struct{})
	defer close(done)
	go func() {
		var first os.Signal
		for {
			select {
			case s := <-o.signals:
				switch {
				case s == syscall.SIGUSR1:
					select {
					case flush <- struct{}{}:
					default: // a flush is already pending
					}
				case first == nil:
					first = s
					stopped <- s
					close(stop)
					fmt.Fprintf(o.streams.Err, "batchpipe: %v: delivering what was read (%v again to abandon it)\n", s, s)
				default:
					abandon(fmt.Errorf("second signal (%v)", s))
				}
			case <-done:
				return
			}
		}
	}()

	st, runErr := p.Run(ctx)
	var sig os.Signal
	select {
	case sig = <-stopped:
	default:
	}
	return o.report(st, runErr, sig)
}

// report prints the summary and the failure, if any, and picks the exit
// status: the one place that decides it.
func (o *options) report(st batcher.Stats, runErr error, sig os.Signal) error {
	w := o.streams.Err
	if !o.quiet {
		fmt.Fprintf(w, "batchpipe: %d records (%s) read, %d delivered in %d batches, %d dead-lettered, %d undelivered, %d retries, %s\n",
			st.Read, humanBytes(st.BytesRead), st.Delivered, st.BatchesDone, st.DeadLettered, st.Undelivered, st.Retries,
			st.Elapsed.Round(1e6))
	}
	switch {
	case st.Undelivered > 0 || runErr != nil:
		if st.Undelivered > 0 {
			fmt.Fprintf(w, "batchpipe: %d of %d records not delivered\n", st.Undelivered, st.Read)
		}
		if runErr != nil {
			fmt.Fprintf(w, "batchpipe: %v\n", runErr)
		}
		return exitError(exitFailed)
	case sig != nil:
		var n int
		if s, ok := sig.(syscall.Signal); ok {
			n = int(s)
		}
		return exitError(exitSignal + n)
	case st.DeadLettered > 0:
		fmt.Fprintf(w, "batchpipe: completed, %d records dead-lettered to %s\n", st.DeadLettered, o.deadLetter)
		return exitError(exitDeadLettered)
	}
	return nil
}
