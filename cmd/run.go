package cmd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/monitor"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/batchpipe/batchpipe/sources"
)

// run checks the flags, opens the source (stdin or Kafka), the dead letter
// and the sink, and runs the pipeline. Signals: the first SIGINT, SIGTERM,
// SIGHUP or SIGQUIT (which also dumps the goroutines' stacks) stops reading
// and drains, a second abandons what is in flight; SIGUSR1
// flushes the open batch; SIGUSR2 writes the stats file.
func (o *options) run(openSink func() (batcher.Sink, error)) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	if err := o.checkKafka(); err != nil {
		return err
	}
	if o.kafka.enabled() && o.streams.inputWaiting() {
		return usagef("--topic reads Kafka, but data waits on stdin, which would be ignored: leave out --topic to read stdin, or give no input")
	}
	if o.statsFile != "" {
		// Found now, not at exit: and a report from an earlier run no
		// longer stands for this one.
		r := monitor.NewReport(o.sink, batcher.Stats{})
		r.Running = true
		if err := monitor.WriteFile(o.statsFile, r); err != nil {
			o.statsBroken = true
			return refused(fmt.Errorf("--stats-file: %w", err))
		}
	}
	if o.runHook != nil {
		return o.runHook(cfg, openSink)
	}
	p := &batcher.Pipeline{
		Source: &sources.Stream{R: o.streams.In, Delim: cfg.Delim, MaxRecordBytes: int(o.maxRecordBytes),
			// A dead-letter file can take a record over the limit whole.
			KeepTooLarge: o.deadLetter != "" && !strings.HasPrefix(o.deadLetter, "kafka:")},
	}
	errw := o.streams.Err
	o.out = o.streams.Out
	var progress *monitor.Progress
	if o.streams.statusLine(o.progress, o.quiet) {
		progress = &monitor.Progress{W: o.streams.Err, Stats: p.Stats, Color: o.streams.color(), Dumb: o.streams.dumb()}
		errw = progress.Log()
		if o.streams.sameTerminal() {
			// Commands' output then passes through batchpipe, which
			// erases the status line before it and draws it again after.
			o.out = progress.Through(o.streams.Out)
		}
	}
	cfg.Logger = o.logger(errw)
	o.diag, o.log = errw, cfg.Logger

	dlTopic, dlKafka := strings.CutPrefix(o.deadLetter, "kafka:")
	var kr *kafkaRun
	stopAtStart := func(s stoppedAtStart) error {
		// Nothing was read, so nothing is committed: a broker that does
		// not answer must not hold the exit.
		kr = nil
		return o.report(batcher.Stats{}, nil, s.sig)
	}
	if o.kafka.enabled() || dlKafka {
		// Connecting may wait on brokers that do not answer, for seconds.
		var opened *kafkaRun // written by open, read only once it returned
		err := o.whileOpening(func() (err error) {
			opened, err = o.openKafka(cfg.Logger)
			return err
		})
		if s, ok := err.(stoppedAtStart); ok {
			return stopAtStart(s)
		}
		if err != nil {
			return err
		}
		kr = opened
		defer func() {
			if kr != nil { // a return before the run: nothing to commit
				o.finishKafka(context.Background(), kr)
			}
		}()
		if kr.src != nil {
			p.Source = kr.src
			switch {
			case o.txnSink():
				cfg.Key = batcher.PartitionKey // Plan: the sink's, below
			case o.kafka.exactlyOnce:
				cfg.Key, cfg.Plan = batcher.PartitionKey, kr.src.PlanBatch
			}
			o.kafkaLag = kr.src.Lag
			if progress != nil {
				progress.Lag = kr.totalLag
			}
		}
	}
	switch {
	case dlKafka:
		var dl batcher.DeadLetter
		err := o.whileOpening(func() (err error) {
			dl, err = kr.deadLetter(dlTopic) // closed by kr.finish
			return err
		})
		if s, ok := err.(stoppedAtStart); ok {
			return stopAtStart(s)
		}
		if err != nil {
			return err
		}
		cfg.DeadLetter = dl
	case o.deadLetter != "":
		var dl *sinks.File
		err := o.whileOpening(func() (err error) {
			dl, err = sinks.OpenFile(o.deadLetter, sinks.FileOptions{Fsync: true, FollowSymlinks: o.followSymlinks})
			return err
		})
		if s, ok := err.(stoppedAtStart); ok {
			return stopAtStart(s)
		}
		if err != nil {
			return refused(fmt.Errorf("dead letter: %w", err))
		}
		defer dl.Close()
		cfg.DeadLetter = dl
	}
	var sink batcher.Sink
	err = o.whileOpening(func() (err error) {
		sink, err = openSink()
		return err
	})
	if s, ok := err.(stoppedAtStart); ok {
		return stopAtStart(s)
	}
	var unavailable *unavailableError
	if errors.As(err, &unavailable) {
		return err
	}
	if err != nil {
		return refused(err)
	}
	cfg = withSinkLimits(cfg, sink)
	p.Sink = sink
	// Kafka clients, of the source, the sink or a dead-letter topic, hold
	// buffers of their own, outside the bound: under a limit that leaves
	// them out the collector runs without end (stdin to a Kafka sink took
	// 4 s of CPU a million records instead of 0.4).
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && kr == nil && o.sink != "kafka" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(memoryLimit(cfg)))
	}
	if limit := debug.SetMemoryLimit(-1); limit == math.MaxInt64 {
		cfg.Logger.Debug("no soft memory limit")
	} else {
		cfg.Logger.Debug("soft memory limit", "bytes", limit)
	}
	if o.metricsAddr != "" {
		var lag func() []monitor.PartitionLag
		if kr != nil && kr.src != nil {
			lag = kr.partitionLag
		}
		m := monitor.NewMetrics(o.sink, p.Stats, lag)
		addr, stop, err := m.Serve(o.metricsAddr)
		if errors.Is(err, syscall.EADDRINUSE) {
			return &unavailableError{err}
		}
		if err != nil {
			return refused(err)
		}
		defer stop()
		cfg.OnSettled = m.Observe
		switch {
		case o.quiet:
		case o.logFormat == "json":
			jsonLogger(errw).Info("metrics at http://" + addr + "/metrics")
		default:
			fmt.Fprintf(errw, "batchpipe: metrics at http://%s/metrics\n", addr)
		}
	}
	if ts, ok := sink.(txnOrderer); ok && o.txnSink() {
		// The sink commits each partition's batches in the order formed.
		cfg.Plan = ts.Plan
		ts.SetOwner(kr.src.Owns)
		if observe := cfg.OnSettled; observe != nil {
			cfg.OnSettled = func(s batcher.Settlement) { ts.OnSettled(s); observe(s) }
		} else {
			cfg.OnSettled = ts.OnSettled
		}
	}
	p.Config = cfg

	sd := newShutdown(o.signals, o.shutdownTimeout)
	defer sd.release()
	sd.stacks = func() { o.dumpStacks(errw) }
	sd.stats = func() {
		o.writeStats(errw, p.Stats(), nil, nil)
		cfg.Logger.Debug("stats file written", "path", o.statsFile)
	}
	sd.announce = func(s os.Signal, committing bool) { o.announceStop(errw, s, committing) }
	p.Stop, p.Flush = sd.stop, sd.flush
	ctx, drain := sd.ctx, sd.drain
	if src, ok := p.Source.(*sources.Stream); ok {
		// A record the first signal cuts in half is read to its end
		// while the drain lasts.
		src.Stopped, src.Drain = sd.stop, drain
	}
	sd.start()

	var drawing sync.WaitGroup
	pctx, stopDrawing := context.WithCancel(ctx)
	if progress != nil {
		drawing.Go(func() { progress.Run(pctx) })
	}
	st, runErr := p.Run(ctx)
	stopDrawing()
	drawing.Wait()

	var extra []string
	if kr != nil {
		// Offsets are committed only now, once deliveries are over; signals
		// still count meanwhile.
		sd.finish()
		if err := o.finishKafka(drain, kr); err != nil {
			runErr = errors.Join(runErr, err)
		}
		if kr.src != nil {
			extra = append(extra, kr.summary(len(o.kafka.topics)))
		}
		kr = nil
	}
	sig := sd.close()
	if o.foundInPlace != nil {
		if n := o.foundInPlace(); n > 0 {
			extra = append(extra, count(n, "batch", "batches")+" found in place, stored before with the same bytes (counted as delivered)")
		}
	}

	var startErr *sources.StartError
	if errors.As(runErr, &startErr) {
		// Nothing was read, and retrying cannot mend it: a setting or a
		// permission to fix, exit 2.
		return refused(startErr)
	}
	return o.report(st, runErr, sig, extra...)
}

// finishKafka runs kr.finish for no longer than --kafka-timeout, and not
// past ctx.
func (o *options) finishKafka(ctx context.Context, kr *kafkaRun) error {
	t := o.kafka.timeout
	ctx, cancel := context.WithTimeoutCause(ctx, t, fmt.Errorf("no answer within --kafka-timeout (%v)", t))
	defer cancel()
	return kr.finish(ctx)
}
