package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// shutdown turns the signals a run receives into its stages, as Litestream
// does in two: the first SIGINT, SIGTERM, SIGHUP or SIGQUIT closes stop (read
// no more, deliver what was read) and starts --shutdown-timeout on drain; a
// second cancels ctx, which abandons what is in flight. SIGUSR1 asks for a
// flush, SIGUSR2 for the stats file. It runs from start until close.
type shutdown struct {
	// ctx ends at the second signal; drain also ends once timeout has
	// passed since the first. Both bound the final Kafka commit too.
	ctx, drain context.Context
	stop       chan struct{} // closed at the first stopping signal
	flush      chan struct{} // one receive per SIGUSR1, pending ones merged

	signals  <-chan os.Signal
	timeout  time.Duration
	stats    func()                             // SIGUSR2
	stacks   func()                             // SIGQUIT, before it stops the run
	announce func(s os.Signal, committing bool) // the first stopping signal

	abandon, drainOver context.CancelCauseFunc
	finishing          atomic.Bool    // deliveries are over: Kafka commits and closes
	stopped            chan os.Signal // the signal that stopped the run
	done               chan struct{}
	loop               sync.WaitGroup
}

// newShutdown returns a shutdown reading signals; fields left nil do nothing.
func newShutdown(signals <-chan os.Signal, timeout time.Duration) *shutdown {
	s := &shutdown{
		signals: signals,
		timeout: timeout,
		stop:    make(chan struct{}),
		flush:   make(chan struct{}, 1),
		stopped: make(chan os.Signal, 1),
		done:    make(chan struct{}),
	}
	s.ctx, s.abandon = context.WithCancelCause(context.Background())
	s.drain, s.drainOver = context.WithCancelCause(s.ctx)
	return s
}

// start handles signals until close.
func (s *shutdown) start() {
	s.loop.Go(func() {
		var first os.Signal
		var deadline *time.Timer
		defer func() {
			if deadline != nil {
				deadline.Stop()
			}
		}()
		for {
			var sig os.Signal
			select {
			case sig = <-s.signals:
			case <-s.done:
				return
			}
			if sig == syscall.SIGQUIT && s.stacks != nil {
				s.stacks()
			}
			switch {
			case sig == syscall.SIGUSR1:
				select {
				case s.flush <- struct{}{}:
				default: // a flush is already pending
				}
			case sig == syscall.SIGUSR2:
				if s.stats != nil {
					s.stats()
				}
			case first == nil:
				first = sig
				s.stopped <- sig
				close(s.stop)
				if s.timeout > 0 {
					deadline = time.AfterFunc(s.timeout, func() {
						s.drainOver(fmt.Errorf("%w (--shutdown-timeout %v)", batcher.ErrShutdownTimeout, s.timeout))
					})
				}
				if s.announce != nil {
					s.announce(sig, s.finishing.Load())
				}
			default:
				s.abandon(fmt.Errorf("second signal (%v)", sig))
			}
		}
	})
}

// finish says that deliveries are over and only the Kafka commit remains,
// which the first signal's message then names.
func (s *shutdown) finish() { s.finishing.Store(true) }

// close stops handling signals, waits until the loop has returned, and
// returns the signal that stopped the run, if one did.
func (s *shutdown) close() os.Signal {
	close(s.done)
	s.loop.Wait()
	select {
	case sig := <-s.stopped:
		return sig
	default:
		return nil
	}
}

// release frees the contexts, once nothing uses them.
func (s *shutdown) release() {
	s.drainOver(nil)
	s.abandon(nil)
}

// announceStop says what the first stopping signal does, and how to
// abandon it.
func (o *options) announceStop(w io.Writer, s os.Signal, committing bool) {
	what := "delivering what was read"
	if committing {
		what = "committing the offsets of what was delivered"
	}
	if o.logFormat == "json" {
		jsonLogger(w).Warn(fmt.Sprintf("%v: %s (%v again to abandon it)", s, what, s), "signal", s.String())
		return
	}
	fmt.Fprintf(w, "batchpipe: %v: %s (%v again to abandon it)\n", s, what, s)
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
func (r *running) whileOpening(open func() error) error {
	done := make(chan error, 1)
	go func() { done <- open() }()
	for {
		select {
		case err := <-done:
			return err
		case s := <-r.o.signals:
			switch s {
			case syscall.SIGQUIT:
				r.o.dumpStacks(r.errw)
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
