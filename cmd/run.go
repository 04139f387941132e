package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/kafka"
	"github.com/batchpipe/batchpipe/monitor"
	"github.com/batchpipe/batchpipe/sources"
)

// run checks the flags, opens the source (stdin or Kafka), the dead letter
// and the sink, runs the pipeline, commits what Kafka offsets it must and
// reports: open → run → finish → report. Signals: the first SIGINT,
// SIGTERM, SIGHUP or SIGQUIT (which also dumps the goroutines' stacks)
// stops reading and drains, a second abandons what is in flight; SIGUSR1
// flushes the open batch; SIGUSR2 writes the stats file (see shutdown).
func (o *options) run(sink sinkSpec) (err error) {
	cfg, err := o.prepare(sink)
	if err != nil {
		return err
	}
	openSink := sinkOpener(sink.open)
	if o.runHook != nil {
		return o.runHook(cfg, openSink)
	}
	r := o.newRunning(cfg)
	defer r.close()
	defer func() {
		if err != nil {
			err = &startedError{err, r.gauges}
		}
	}()
	if err := r.open(openSink); err != nil {
		if s, ok := err.(stoppedAtStart); ok {
			// Nothing was read, so nothing is committed: a broker that does
			// not answer must not hold the exit.
			r.kr = nil
			return o.report(batcher.Stats{}, r.gauges, nil, s.sig)
		}
		return err
	}
	r.limitMemory()
	if err := r.serveMetrics(); err != nil {
		return err
	}
	if r.kr != nil {
		if err := r.kr.Wire(&r.cfg, r.p.Sink); err != nil {
			return err
		}
	}
	r.p.Config = r.cfg

	r.hintTerminal()

	sd := r.shutdown()
	defer sd.release()
	sd.start()
	st, runErr := r.runPipeline(sd.ctx)
	extra, err := r.finish(sd)
	if err != nil {
		runErr = errors.Join(runErr, err)
	}
	sig := sd.close()
	if r.gauges.foundInPlace != nil {
		if n := r.gauges.foundInPlace(); n > 0 {
			extra = append(extra, count(n, "batch", "batches")+" found in place, stored before with the same bytes (counted as delivered)")
		}
	}

	var kerr *kafka.Error
	if errors.As(runErr, &kerr) && kerr.Kind == kafka.Refused {
		// Nothing was read, and retrying cannot mend it: a setting or a
		// permission to fix, exit 2.
		return refused(kerr)
	}
	return o.report(st, r.gauges, runErr, sig, extra...)
}

// A sinkOpener opens the sink, with what the run has set up for it.
type sinkOpener func(sinkEnv) (batcher.Sink, error)

// A sinkSpec is a sink's settings, from its flags and arguments: validate
// checks them, and settles what they leave to it, in the one pass of
// checks before anything is opened (prepare); open then opens the sink.
type sinkSpec interface {
	validate(o *options) error
	open(env sinkEnv) (batcher.Sink, error)
}

// openOnly is a sinkSpec whose flags were checked before run.
type openOnly sinkOpener

func (openOnly) validate(*options) error                  { return nil }
func (f openOnly) open(env sinkEnv) (batcher.Sink, error) { return f(env) }

// A sinkEnv is where a sink's output, diagnostics and log go: stdout and
// stderr, or through the status line. The run sets it up before it opens
// the sink.
type sinkEnv struct {
	out, diag io.Writer
	log       *slog.Logger
}

// running is one run's state from open to report. It lives in run only:
// the options hold what the flags say.
type running struct {
	o        *options
	cfg      batcher.Config
	p        *batcher.Pipeline
	progress *monitor.Progress // nil without a status line
	errw     io.Writer         // diagnostics: stderr, or through the status line
	env      sinkEnv           // what the sink is opened with
	gauges   gauges            // for the stats file
	kr       *kafka.Session    // nil without Kafka, and once finished
	closers  []func()          // what open started, undone by close in reverse
}

// close undoes what open did, last first: on a return before the run, the
// Kafka client is closed without a commit, since nothing was read.
func (r *running) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// shutdown returns the run's shutdown, wired to the pipeline and stdin.
func (r *running) shutdown() *shutdown {
	o, p := r.o, r.p
	sd := newShutdown(o.signals, o.shutdownTimeout)
	sd.stacks = func() { o.dumpStacks(r.errw) }
	sd.stats = func() {
		o.writeStats(r.errw, p.Stats(), r.gauges, nil, nil)
		r.cfg.Logger.Debug("stats file written", "path", o.statsFile)
	}
	sd.announce = func(s os.Signal, committing bool) { o.announceStop(r.errw, s, committing) }
	p.Stop, p.Flush = sd.stop, sd.flush
	if src, ok := p.Source.(*sources.Stream); ok {
		// A record the first signal cuts in half is read to its end
		// while the drain lasts.
		src.Stopped, src.Drain = sd.stop, sd.drain
	}
	return sd
}

// hintTerminal says, when records are read from a terminal, how to end
// them: a command run without its input otherwise just waits.
func (r *running) hintTerminal() {
	o := r.o
	if _, stdin := r.p.Source.(*sources.Stream); !stdin || o.quiet || !o.streams.inTerminal() {
		return
	}
	const hint = "reading records from the terminal (stdin): end them with Ctrl-D, or give input with < FILE or a pipe"
	if o.logFormat == "json" {
		jsonLogger(r.errw).Info(hint)
	} else {
		fmt.Fprintln(r.errw, "batchpipe: "+hint)
	}
}

// runPipeline runs the pipeline, with the status line drawn meanwhile.
func (r *running) runPipeline(ctx context.Context) (batcher.Stats, error) {
	var drawing sync.WaitGroup
	pctx, stopDrawing := context.WithCancel(ctx)
	if r.progress != nil {
		drawing.Go(func() { r.progress.Run(pctx) })
	}
	st, err := r.p.Run(ctx)
	stopDrawing()
	drawing.Wait()
	return st, err
}

// finish commits the Kafka offsets of what was delivered and closes the
// clients, and returns the Kafka summary.
func (r *running) finish(sd *shutdown) (extra []string, err error) {
	kr := r.kr
	if kr == nil {
		return nil, nil
	}
	r.kr = nil
	// Offsets are committed only now, once deliveries are over; signals
	// still count meanwhile.
	sd.finish()
	err = kr.Finish(sd.drain)
	if kr.Source() != nil {
		extra = append(extra, kr.Summary())
	}
	return extra, err
}
