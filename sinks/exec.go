package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/guard"
)

// ExecConfig configures an Exec sink.
type ExecConfig struct {
	// Argv is the command and its arguments; Argv[0] is looked up in $PATH.
	Argv []string

	// Format lays out the batch on stdin; default Lines, the records as
	// read. Not used with Args.
	Format Format

	// Args passes records as arguments instead of on stdin: appended to
	// Argv, or, when some arguments hold {}, each of those repeated once per
	// record with {} replaced by it.
	Args bool

	// Timeout fails a run that lasts longer; 0: no limit.
	Timeout time.Duration
	// KillAfter is how long a run has after SIGTERM before SIGKILL, and how
	// long Wait waits for pipes a finished command left to its background
	// processes before it SIGKILLs them. Default 5s.
	KillAfter time.Duration

	// Parallel is the number of runs at once (-j). Above 1, each run's
	// stdout is held and written in one piece.
	Parallel int
	// KeepOrder writes the stdout of runs in batch order.
	KeepOrder bool

	Stdout, Stderr io.Writer
	// Env is the environment each run starts from. Default os.Environ().
	Env []string
	// Logger, if set, is told when commands cannot be guarded against
	// batchpipe's own death (see Exec.run).
	Logger *slog.Logger
}

// Exec runs a command once per batch, the batch on its stdin or as its
// arguments. Success is exit status 0.
type Exec struct {
	name      string   // the command as given, for messages
	path      string   // where it was found
	argv      []string // as given, Argv[0] included
	timeout   time.Duration
	killAfter time.Duration
	env       []string

	stdout  io.Writer     // nil: outputs are held and written by emit
	emitMu  sync.Mutex    // one held output written at a time
	outw    io.Writer     // batchpipe's stdout
	stderr  *lockedWriter // batchpipe's stderr
	order   *batchOrder   // nil unless --keep-order with -j > 1
	emitErr error         // first failure to write a held output; under emitMu
	lost    int           // outputs not written once their batch was settled; under emitMu
	lostSeq int64         // the batch of the first of them

	args   *argv  // nil unless --args
	format Format // of stdin

	groupsMu sync.Mutex
	groups   map[int]bool // process groups of runs not yet waited for
	guard    *guard.Guard // kills them should batchpipe die; nil in tests
	log      *slog.Logger
}

var (
	_ batcher.Sink      = (*Exec)(nil)
	_ batcher.Settler   = (*Exec)(nil)
	_ batcher.Closer    = (*Exec)(nil)
	_ batcher.Abandoner = (*Exec)(nil)
)

// NewExec finds the command, so that one that cannot be run is an error
// before any input is read.
func NewExec(cfg ExecConfig) (*Exec, error) {
	if len(cfg.Argv) == 0 {
		return nil, errors.New("exec sink: no command given")
	}
	name := cfg.Argv[0]
	path, err := exec.LookPath(name)
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err
		}
		return nil, fmt.Errorf("exec sink: cannot run %q: %w", name, err)
	}
	s := &Exec{
		name:      name,
		path:      path,
		argv:      cfg.Argv,
		timeout:   cfg.Timeout,
		killAfter: cfg.KillAfter,
		env:       cfg.Env,
		format:    cfg.Format,
		outw:      cfg.Stdout,
		stderr:    &lockedWriter{w: cfg.Stderr},
		groups:    make(map[int]bool),
		guard:     guard.New(),
		log:       cfg.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.killAfter <= 0 {
		s.killAfter = 5 * time.Second
	}
	if s.env == nil {
		s.env = os.Environ()
	}
	switch {
	case cfg.Parallel > 1 && cfg.KeepOrder:
		s.order = newBatchOrder(int64(2 * cfg.Parallel))
	case cfg.Parallel <= 1:
		// One run at a time: output passes straight through, live.
		s.stdout = cfg.Stdout
	}
	if cfg.Args {
		if s.args, err = newArgv(path, cfg.Argv, s.env); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// BatchLimits returns the largest batch weight and the weight added per
// record that keep a batch's command line within the system's limit: for
// --args, to be applied as batcher.Config.MaxBytes and PerRecordOverhead.
// (0, 0) means no limit.
func (s *Exec) BatchLimits() (maxBytes, perRecordOverhead int) {
	if s.args == nil {
		return 0, 0
	}
	return s.args.batchLimits()
}

// Deliver runs the command for b.
func (s *Exec) Deliver(ctx context.Context, b *batcher.Batch) error {
	if s.order != nil {
		if err := s.order.wait(ctx, b.Seq); err != nil {
			return fmt.Errorf("exec sink: %s: %w", s.name, err)
		}
	}
	r := run{argv: s.argv, records: b.Len(), bytes: b.Size()}
	var rej *batcher.RejectError
	if s.args != nil {
		r.argv, rej = s.args.build(b)
		if rej != nil && len(rej.Records) == b.Len() {
			return rej // nothing left to run
		}
		if rej != nil {
			r.records -= len(rej.Records)
			for _, x := range rej.Records {
				r.bytes -= len(b.Record(x.Index)) + 1
			}
		}
		if err := s.args.check(r.argv); err != nil {
			return err
		}
	} else {
		var buf []byte
		body, bad := s.format.Body(&buf, b)
		if len(bad) > 0 {
			rej = &batcher.RejectError{Records: bad}
			if len(bad) == b.Len() {
				return rej
			}
			r.records -= len(bad)
		}
		r.stdin, r.bytes = body, len(body)
	}
	r.stdout = s.stdout
	var held *heldOutput
	if r.stdout == nil {
		held = &heldOutput{}
		r.stdout = held
	}
	err := s.run(ctx, b, &r)
	if held != nil {
		var werr error
		if s.order != nil {
			werr = s.hold(b.Seq, held)
		} else {
			werr = s.emit(held)
		}
		if werr != nil {
			// The command ran, but what it printed is lost: the batch is
			// not delivered, whatever its exit status.
			return werr
		}
	}
	if err != nil {
		return err
	}
	if rej != nil {
		return rej
	}
	return nil
}

// AbandonGrace is how long runs take to end once abandoned: past
// --shutdown-timeout they get SIGTERM and --kill-after; after a second
// signal they are killed at once.
func (s *Exec) AbandonGrace(cause error) time.Duration {
	if errors.Is(cause, batcher.ErrShutdownTimeout) {
		return s.killAfter
	}
	return 0
}

// Kill SIGKILLs the process group of every run still going, so that none
// outlives batchpipe.
func (s *Exec) Kill() {
	s.groupsMu.Lock()
	for pgid := range s.groups {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	s.groupsMu.Unlock()
	s.closeGuard()
}

// closeGuard lets the guardian go: it SIGKILLs the groups still in its
// table, if any, and exits.
func (s *Exec) closeGuard() {
	if err := s.guard.Close(); err != nil {
		s.log.Warn("exec sink: " + err.Error())
	}
}

// Settled writes held outputs that are now next in batch order.
func (s *Exec) Settled(seq int64) {
	if s.order != nil {
		s.order.settle(seq)
	}
}

// Close reports outputs that could not be written after their batches
// were settled; those of batches not yet settled failed their batches.
func (s *Exec) Close() error {
	s.closeGuard()
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	if s.lost > 0 {
		return fmt.Errorf("exec sink: %s: output of %d runs not written, the first of batch %d: %w", s.name, s.lost, s.lostSeq, s.emitErr)
	}
	return nil
}
