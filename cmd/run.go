package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/monitor"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/batchpipe/batchpipe/sources"
	"github.com/mattn/go-isatty"
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
	case o.backoff > o.maxBackoff:
		return cfg, usagef("--backoff %v is longer than --max-backoff %v: no retry would wait as long as the first is meant to", o.backoff, o.maxBackoff)
	case o.shutdownTimeout < 0:
		return cfg, usagef("--shutdown-timeout must not be negative, not %v", o.shutdownTimeout)
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return cfg, usagef("--progress takes auto, always or never, not %q", o.progress)
	}
	switch o.logFormat {
	case "text", "json":
	default:
		return cfg, usagef("--log-format takes text or json, not %q", o.logFormat)
	}
	delim, err := o.delim()
	if err != nil {
		return cfg, err
	}
	key, err := o.keyFunc()
	if err != nil {
		return cfg, err
	}
	cfg = batcher.Config{
		MaxRecords:      o.maxRecords,
		MaxBytes:        int(o.maxBytes),
		Linger:          o.linger,
		Delim:           delim,
		Parallel:        o.parallel,
		Retries:         o.retries,
		Backoff:         o.backoff,
		MaxBackoff:      o.maxBackoff,
		ShutdownTimeout: o.shutdownTimeout,
	}
	if key != nil {
		cfg.Key, cfg.MaxOpenKeys, cfg.MaxBufferedBytes = key, o.maxOpenKeys, int(o.maxBufferedBytes)
	}
	return cfg, nil
}

// txnOrderer is the kafka sink with --exactly-once: it learns the order
// batches are formed in, and their fate.
type txnOrderer interface {
	Plan(b *batcher.Batch) error
	OnSettled(s batcher.Settlement)
	SetOwner(owns func(b *batcher.Batch) bool)
}

// keyFunc checks --partition-by and its bounds and returns the key
// function, or nil without it.
func (o *options) keyFunc() (func([]byte, *batcher.Record) ([]byte, error), error) {
	changed := func(name string) bool {
		f := o.flags.Lookup(name)
		return f != nil && f.Changed
	}
	if o.partitionBy == "" {
		for _, name := range []string{"field-delimiter", "max-open-keys", "max-buffered-bytes"} {
			if changed(name) {
				return nil, usagef("--%s is for --partition-by: give it too", name)
			}
		}
		return nil, nil
	}
	switch {
	case o.kafka.exactlyOnce:
		return nil, usagef("--partition-by and --exactly-once: exactly once batches by partition, and key batches would not be formed again the same way after a crash; give one")
	case o.maxOpenKeys < 1:
		return nil, usagef("--max-open-keys must be at least 1, not %d", o.maxOpenKeys)
	case o.maxBufferedBytes < 1:
		return nil, usagef("--max-buffered-bytes must be at least 1 byte")
	}
	fd := o.fieldDelimiter
	switch fd {
	case "", `\t`:
		fd = "\t"
	case `\0`:
		fd = "\x00"
	}
	if len(fd) != 1 {
		return nil, usagef("--field-delimiter takes a single byte (or \\t), not %q", o.fieldDelimiter)
	}
	kt, err := batcher.ParseKeyTemplate(o.partitionBy, fd[0])
	if err != nil {
		return nil, usagef("--partition-by: %v", err)
	}
	if kt.NeedsKafka() && !o.kafka.enabled() {
		return nil, usagef("--partition-by: {kafka_key}, {topic} and {partition} read Kafka: give --topic too")
	}
	return kt.Key, nil
}

// logger writes warnings, and with -v a line per batch, to w.
func (o *options) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelWarn}
	if o.verbose {
		opts.Level = slog.LevelDebug
	}
	if o.logFormat == "json" {
		opts.ReplaceAttr = durationUnits
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func (o *options) delim() (byte, error) {
	if o.null && o.delimiter != "" {
		return 0, usagef("-0 and -d both set the delimiter: give one")
	}
	if o.null {
		return 0, nil
	}
	if f := o.flags.Lookup("delimiter"); f != nil && f.Changed && o.delimiter == "" {
		return 0, usagef("-d takes a single byte (or \\n, \\t, \\r, \\0), not an empty string")
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

// A limitedSink cannot take batches of any size (a command line): its
// limits tighten --max-bytes and count a cost per record toward it.
type limitedSink interface {
	BatchLimits() (maxBytes, perRecordOverhead int)
}

// withSinkLimits tightens cfg to the batches sink can take.
func withSinkLimits(cfg batcher.Config, sink batcher.Sink) batcher.Config {
	if l, ok := sink.(limitedSink); ok {
		if maxBytes, overhead := l.BatchLimits(); maxBytes > 0 {
			cfg.MaxBytes = min(cfg.MaxBytes, maxBytes)
			cfg.PerRecordOverhead = overhead
		}
	}
	return cfg
}

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
	if o.kafka.enabled() && waiting(o.streams.In) {
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
	if o.showProgress() {
		_, noColor := os.LookupEnv("NO_COLOR")
		dumb := os.Getenv("TERM") == "dumb"
		progress = &monitor.Progress{W: o.streams.Err, Stats: p.Stats, Color: o.streams.ErrIsTerminal && !noColor && !dumb, Dumb: dumb}
		errw = progress.Log()
		if sameTerminal(o.streams.Out, o.streams.Err) {
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
			if o.kafka.group != "" {
				o.kafkaGroup = kr.src.GroupState
			}
			if progress != nil {
				progress.Lag = kr.totalLag
				progress.Group = o.kafkaGroup
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
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(memoryLimit(cfg) + deliveryMemory(sink, cfg)))
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
		if o.kafkaGroup != nil {
			m.WithGroup(o.kafkaGroup)
		}
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

	stop := make(chan struct{})
	flush := make(chan struct{}, 1)
	p.Stop, p.Flush = stop, flush
	// ctx ends at the second signal; drain also ends once --shutdown-timeout
	// has passed since the first. Both bound the final Kafka commit too.
	ctx, abandon := context.WithCancelCause(context.Background())
	defer abandon(nil)
	drain, drainOver := context.WithCancelCause(ctx)
	defer drainOver(nil)
	if src, ok := p.Source.(*sources.Stream); ok {
		// A record the first signal cuts in half is read to its end
		// while the drain lasts.
		src.Stopped, src.Drain = stop, drain
	}
	var finishing atomic.Bool          // the pipeline is over: Kafka commits and closes
	stopped := make(chan os.Signal, 1) // the signal that stopped the run
	done := make(chan struct{})
	var signals sync.WaitGroup
	signals.Go(func() {
		var first os.Signal
		var deadline *time.Timer
		defer func() {
			if deadline != nil {
				deadline.Stop()
			}
		}()
		for {
			select {
			case s := <-o.signals:
				if s == syscall.SIGQUIT {
					o.dumpStacks(errw)
				}
				switch {
				case s == syscall.SIGUSR1:
					select {
					case flush <- struct{}{}:
					default: // a flush is already pending
					}
				case s == syscall.SIGUSR2:
					o.writeStats(errw, p.Stats(), nil, nil)
					cfg.Logger.Debug("stats file written", "path", o.statsFile)
				case first == nil:
					first = s
					stopped <- s
					close(stop)
					if o.shutdownTimeout > 0 {
						deadline = time.AfterFunc(o.shutdownTimeout, func() {
							drainOver(fmt.Errorf("%w (--shutdown-timeout %v)", batcher.ErrShutdownTimeout, o.shutdownTimeout))
						})
					}
					what := "delivering what was read"
					if finishing.Load() {
						what = "committing the offsets of what was delivered"
					}
					if o.logFormat == "json" {
						jsonLogger(errw).Warn(fmt.Sprintf("%v: %s (%v again to abandon it)", s, what, s), "signal", s.String())
					} else {
						fmt.Fprintf(errw, "batchpipe: %v: %s (%v again to abandon it)\n", s, what, s)
					}
				default:
					abandon(fmt.Errorf("second signal (%v)", s))
				}
			case <-done:
				return
			}
		}
	})

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
		finishing.Store(true)
		if err := o.finishKafka(drain, kr); err != nil {
			runErr = errors.Join(runErr, err)
		}
		if kr.src != nil {
			extra = append(extra, kr.summary(len(o.kafka.topics)))
		}
		kr = nil
	}
	close(done)
	signals.Wait()
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
	var sig os.Signal
	select {
	case sig = <-stopped:
	default:
	}
	return o.report(st, runErr, sig, extra...)
}

// stoppedAtStart is a stopping signal that came while an output or Kafka
// was being opened.
type stoppedAtStart struct{ sig os.Signal }

func (s stoppedAtStart) Error() string { return "stopped by " + s.sig.String() }

// whileOpening runs open, which may wait (a FIFO waits for a reader, a
// broker may not answer), while SIGINT, SIGTERM, SIGHUP and SIGQUIT still
// work: each ends the wait with stoppedAtStart, leaving open to finish with
// the process. Nothing has been read yet: there is nothing to flush or
// report on SIGUSR1/SIGUSR2.
func (o *options) whileOpening(open func() error) error {
	done := make(chan error, 1)
	go func() { done <- open() }()
	for {
		select {
		case err := <-done:
			return err
		case s := <-o.signals:
			switch s {
			case syscall.SIGQUIT:
				o.dumpStacks(diagWriter{o})
				return stoppedAtStart{s}
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP:
				return stoppedAtStart{s}
			}
		}
	}
}

// maxStacks bounds the buffer of a SIGQUIT's stack dump.
const maxStacks = 64 << 20

// dumpStacks writes every goroutine's stack to w, as Go does on SIGQUIT,
// to show where a run is stuck; unlike Go, batchpipe then drains as on
// SIGTERM, rather than lose what it read.
func (o *options) dumpStacks(w io.Writer) {
	buf := make([]byte, 256<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= maxStacks {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	if o.logFormat == "json" {
		jsonLogger(w).Warn("SIGQUIT: goroutine stacks", "signal", syscall.SIGQUIT.String(), "stacks", string(buf))
		return
	}
	fmt.Fprintf(w, "batchpipe: SIGQUIT: goroutine stacks follow\n%s\n", bytes.TrimRight(buf, "\n"))
}

// memoryLimit is the soft limit given to the garbage collector, so that
// runs of any length stay within the bound the README states: 15 MiB +
// 2 × (-j + 2) × --max-bytes (+ 4 × the largest record). What is read and
// not delivered is at most (-j + 2) batches, plus three read buffers; left
// to GOGC alone, the heap may grow to twice what is live, plus whatever
// garbage long runs leave, and did pass the bound. About 7 MiB of the 15 are
// the binary and memory the runtime does not count. A record larger than
// --max-bytes may take the heap past the limit while it is held: the
// collector then works harder (at most half the CPU), nothing fails.
//
// With --partition-by the open batches and those flushed and waiting for
// a worker hold up to --max-buffered-bytes more, in buffers within the
// bound the README states for it: 5 × --max-buffered-bytes + 4 × (-j + 2)
// × --max-bytes. Held to the bound without a key, the collector ran
// dozens of times a second and took more time than the batching.
func memoryLimit(cfg batcher.Config) int64 {
	if cfg.Key != nil {
		return 8<<20 + 5*int64(cfg.MaxBufferedBytes) + 4*int64(cfg.Parallel+2)*int64(cfg.MaxBytes)
	}
	return 8<<20 + 2*int64(cfg.Parallel+2)*int64(cfg.MaxBytes)
}

// waiting reports whether in is a file with bytes left to read or a pipe
// with bytes in it: input that a run reading Kafka would ignore. (A pipe
// whose writer has not written yet cannot be told from an idle one.)
func waiting(in io.Reader) bool {
	f, ok := in.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	switch {
	case fi.Mode().IsRegular():
		off, err := f.Seek(0, io.SeekCurrent)
		return err == nil && fi.Size() > off
	case fi.Mode()&os.ModeNamedPipe != 0:
		var n int32
		var errno syscall.Errno
		withFd(f, func(fd uintptr) {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
		})
		return errno == 0 && n > 0
	}
	return false
}

// withFd calls do with f's descriptor. Unlike f.Fd, it leaves f in the
// mode it was, non-blocking or not.
func withFd(f *os.File, do func(fd uintptr)) bool {
	rc, err := f.SyscallConn()
	return err == nil && rc.Control(do) == nil
}

// showProgress decides whether the status line is drawn: with --progress
// auto, only where a person watches stderr and nothing else writes to the
// same terminal (stdout there would mix with it, as pv users know), not on
// a dumb terminal and not with -q.
func (o *options) showProgress() bool {
	switch o.progress {
	case "always":
		return true
	case "never":
		return false
	}
	return o.streams.ErrIsTerminal && !o.quiet && os.Getenv("TERM") != "dumb" &&
		!sameTerminal(o.streams.Out, o.streams.Err)
}

// sameTerminal reports whether a and b are both the same terminal.
func sameTerminal(a, b io.Writer) bool {
	fa, ok := a.(*os.File)
	if !ok {
		return false
	}
	fb, ok := b.(*os.File)
	if !ok {
		return false
	}
	var sa, sb syscall.Stat_t
	terminal := func(f *os.File, st *syscall.Stat_t) bool {
		is := false
		withFd(f, func(fd uintptr) { is = isatty.IsTerminal(fd) && syscall.Fstat(int(fd), st) == nil })
		return is
	}
	return terminal(fa, &sa) && terminal(fb, &sb) && sa.Rdev == sb.Rdev
}

// finishKafka runs kr.finish for no longer than --kafka-timeout, and not
// past ctx.
func (o *options) finishKafka(ctx context.Context, kr *kafkaRun) error {
	t := o.kafka.timeout
	ctx, cancel := context.WithTimeoutCause(ctx, t, fmt.Errorf("no answer within --kafka-timeout (%v)", t))
	defer cancel()
	return kr.finish(ctx)
}

// writeStats writes the stats file, if one was asked for; status is nil
// while the run goes on.
func (o *options) writeStats(w io.Writer, st batcher.Stats, status *int, runErr error) {
	if o.statsFile == "" {
		return
	}
	r := monitor.NewReport(o.sink, st)
	if o.kafkaLag != nil {
		r.Lag = o.kafkaLag()
	}
	if o.foundInPlace != nil {
		r.BatchesFoundInPlace = o.foundInPlace()
	}
	if o.kafkaGroup != nil {
		g := o.kafkaGroup()
		g.PausedSecs = g.Paused.Seconds()
		r.Group = &g
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
func (o *options) report(st batcher.Stats, runErr error, sig os.Signal, extra ...string) error {
	w := o.streams.Err
	code := exitStatus(st, runErr, sig)
	if code == exitBrokenPipe {
		// Like cat: the reader left, so stop, and say no more than a line.
		fmt.Fprintf(w, "batchpipe: stdout: broken pipe, %d of %d records not delivered\n", st.Undelivered+st.InFlight, st.Read)
		o.writeStats(w, st, &code, runErr)
		return exitError(code)
	}
	if o.logFormat == "json" {
		o.reportJSON(st, runErr, code, extra)
		o.writeStats(w, st, &code, runErr)
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
	o.writeStats(w, st, &code, runErr)
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
