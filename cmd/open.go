// A run's opening: the checks before anything is opened, then the status
// line, Kafka, the dead letter, the sink, the memory limit and the metrics
// server, each while a signal can still stop the run.

package cmd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka"
	"github.com/batchpipe/batchpipe/monitor"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/batchpipe/batchpipe/sources"
)

// prepare checks the flags and what they name before anything is opened,
// the sink's first (they may settle a shared one, as the kafka sink's
// -j), and returns the pipeline's config.
func (o *options) prepare(sink sinkSpec) (batcher.Config, error) {
	if err := sink.validate(o); err != nil {
		return batcher.Config{}, err
	}
	cfg, err := o.config()
	if err != nil {
		return cfg, err
	}
	if err := o.checkKafka(); err != nil {
		return cfg, err
	}
	if o.kafka.enabled() && o.streams.inputWaiting() {
		return cfg, usagef("--topic reads Kafka, but data waits on stdin, which would be ignored: leave out --topic to read stdin, or give no input")
	}
	if o.statsFile != "" {
		// Found now, not at exit: and a report from an earlier run no
		// longer stands for this one.
		r := monitor.NewReport(o.sink, batcher.Stats{})
		r.Running = true
		if err := monitor.WriteFile(o.statsFile, r); err != nil {
			return cfg, &statsFileError{refused(fmt.Errorf("--stats-file: %w", err))}
		}
	}
	return cfg, nil
}

// newRunning sets up the pipeline reading stdin, and the status line where
// it is drawn, which diagnostics and output then pass through.
func (o *options) newRunning(cfg batcher.Config) *running {
	r := &running{o: o, cfg: cfg, errw: o.streams.Err}
	r.p = &batcher.Pipeline{
		Source: &sources.Stream{R: o.streams.In, Delim: cfg.Delim, MaxRecordBytes: int(o.maxRecordBytes),
			// A dead-letter file can take a record over the limit whole.
			KeepTooLarge: o.deadLetter != "" && !strings.HasPrefix(o.deadLetter, "kafka:")},
	}
	out := o.streams.Out
	if o.streams.statusLine(o.progress, o.quiet) {
		r.progress = &monitor.Progress{W: o.streams.Err, Stats: r.p.Stats, Color: o.streams.color(), Dumb: o.streams.dumb()}
		r.errw = r.progress.Log()
		if o.streams.sameTerminal() {
			// Commands' output then passes through batchpipe, which
			// erases the status line before it and draws it again once
			// the output has paused: data scrolling by is never mixed
			// with it, and a long run that prints little shows progress.
			out = r.progress.Through(o.streams.Out)
			r.progress.Quiet = time.Second
		}
	}
	r.cfg.Logger = o.logger(r.errw)
	r.env = sinkEnv{out: out, diag: r.errw, log: r.cfg.Logger}
	return r
}

// open opens Kafka, the dead letter and the sink. A signal meanwhile ends
// it with stoppedAtStart.
func (r *running) open(openSink sinkOpener) error {
	if err := r.openKafka(); err != nil {
		return err
	}
	if err := r.openDeadLetter(); err != nil {
		return err
	}
	var sink batcher.Sink
	err := r.whileOpening(func() (err error) {
		sink, err = openSink(r.env)
		return err
	})
	if _, ok := err.(stoppedAtStart); ok {
		return err
	}
	var unavailable *unavailableError
	var kerr *kafka.Error
	if errors.As(err, &unavailable) || errors.As(err, &kerr) {
		return err
	}
	if err != nil {
		return refused(err)
	}
	r.cfg = withSinkLimits(r.cfg, sink)
	r.p.Sink = sink
	if f, ok := sink.(interface{ FoundInPlace() int64 }); ok {
		r.gauges.foundInPlace = f.FoundInPlace
	}
	return nil
}

// openKafka connects to Kafka when it is read or takes dead letters, and
// makes its source the pipeline's and its dead letter the run's.
func (r *running) openKafka() error {
	o := r.o
	if !o.kafka.enabled() && !strings.HasPrefix(o.deadLetter, "kafka:") {
		return nil
	}
	sc, err := o.session(r.cfg.Logger)
	if err != nil {
		return err
	}
	// Connecting may wait on brokers that do not answer, for seconds.
	var opened *kafka.Session // written by open, read only once it returned
	err = r.whileOpening(func() (err error) {
		opened, err = kafka.Open(sc)
		return err
	})
	if err != nil {
		return err
	}
	r.kr = opened
	r.closers = append(r.closers, func() {
		if r.kr != nil { // a return before the run: nothing to commit
			r.kr.Finish(context.Background())
		}
	})
	if dl := r.kr.DeadLetter(); dl != nil {
		r.cfg.DeadLetter = dl // closed by Finish
	}
	src := r.kr.Source()
	if src == nil {
		return nil
	}
	r.p.Source = src
	r.gauges.kafkaLag = src.Lag
	if o.kafka.group != "" {
		r.gauges.kafkaGroup = src.GroupState
	}
	if r.progress != nil {
		r.progress.Lag = src.TotalLag
		r.progress.Group = r.gauges.kafkaGroup
	}
	return nil
}

// openDeadLetter opens --dead-letter when it names a file; openKafka opens
// a Kafka topic's.
func (r *running) openDeadLetter() error {
	o := r.o
	if o.deadLetter == "" || strings.HasPrefix(o.deadLetter, "kafka:") {
		return nil
	}
	var dl *sinks.File
	err := r.whileOpening(func() (err error) {
		dl, err = sinks.OpenFile(o.deadLetter, sinks.FileOptions{Fsync: true, FollowSymlinks: o.followSymlinks})
		return err
	})
	if _, ok := err.(stoppedAtStart); ok {
		return err
	}
	if err != nil {
		return refused(fmt.Errorf("dead letter: %w", err))
	}
	r.closers = append(r.closers, func() { dl.Close() })
	r.cfg.DeadLetter = dl
	return nil
}

// limitMemory gives the garbage collector the soft limit of memoryLimit
// for the run, unless GOMEMLIMIT is set or Kafka clients take part.
func (r *running) limitMemory() {
	// Kafka clients, of the source, the sink or a dead-letter topic, hold
	// buffers of their own, outside the bound: under a limit that leaves
	// them out the collector runs without end (stdin to a Kafka sink took
	// 4 s of CPU a million records instead of 0.4).
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && r.kr == nil && r.o.sink != "kafka" {
		old := debug.SetMemoryLimit(memoryLimit(r.cfg) + deliveryMemory(r.p.Sink, r.cfg))
		r.closers = append(r.closers, func() { debug.SetMemoryLimit(old) })
	}
	if limit := debug.SetMemoryLimit(-1); limit == math.MaxInt64 {
		r.cfg.Logger.Debug("no soft memory limit")
	} else {
		r.cfg.Logger.Debug("soft memory limit", "bytes", limit)
	}
}

// serveMetrics starts the --metrics-addr server, which observes every
// settled batch.
func (r *running) serveMetrics() error {
	o := r.o
	if o.metricsAddr == "" {
		return nil
	}
	var lag func() []monitor.PartitionLag
	if r.kr != nil && r.kr.Source() != nil {
		lag = r.kr.Source().PartitionLag
	}
	m := monitor.NewMetrics(o.sink, r.p.Stats, lag)
	if r.gauges.kafkaGroup != nil {
		m.WithGroup(r.gauges.kafkaGroup)
	}
	addr, stop, err := m.Serve(o.metricsAddr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return &unavailableError{err}
	}
	if err != nil {
		return refused(err)
	}
	r.closers = append(r.closers, stop)
	r.cfg.OnSettled = m.Observe
	switch {
	case o.quiet:
	case o.logFormat == "json":
		jsonLogger(r.errw).Info("metrics at http://" + addr + "/metrics")
	default:
		fmt.Fprintf(r.errw, "batchpipe: metrics at http://%s/metrics\n", addr)
	}
	return nil
}
