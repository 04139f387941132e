package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// heldOutputMemory is how much of one run's stdout is held in memory when
// runs are parallel; the rest goes to a temporary file.
const heldOutputMemory = 256 << 10

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

// emit writes one run's held output to stdout in one piece and frees it.
// After a failure nothing more is written: a write cut short may have left
// part of an output, and a closed pipe or full disk stays so. The error is
// permanent, as retrying the command cannot mend stdout.
func (s *Exec) emit(h *heldOutput) error {
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	defer h.Close()
	if h.empty() {
		return nil // nothing to lose
	}
	if s.emitErr == nil {
		if _, err := h.WriteTo(s.outw); err != nil {
			s.emitErr = err
		}
	}
	if s.emitErr != nil {
		return outputLost(s.name, s.emitErr)
	}
	return nil
}

// errOutput marks a run whose output could not be written.
var errOutput = errors.New("output not written")

// outputLost is the error of a batch whose output could not be written: a
// broken pipe ends the run (like cat, batchpipe stops writing to a reader
// that left), other failures (a full disk) fail the batch without retries,
// as running the command again cannot mend stdout.
func outputLost(name string, err error) error {
	err = fmt.Errorf("exec sink: %w of %s: %w", errOutput, name, err)
	if errors.Is(err, syscall.EPIPE) {
		return batcher.Fatal(err)
	}
	return batcher.Permanent(err)
}

// outWriter passes a run's output on, keeping the first write error.
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil && o.err == nil {
		o.err = err
	}
	return n, err
}

// hold keeps an output until its batch's turn (s.order), or fails its
// batch if stdout already failed, since it would not be written.
func (s *Exec) hold(seq int64, h *heldOutput) error {
	s.emitMu.Lock()
	err := s.emitErr
	s.emitMu.Unlock()
	if err != nil && !h.empty() {
		h.Close()
		return outputLost(s.name, err)
	}
	s.order.hold(seq, func() { s.emitSettled(seq, h) })
	return nil
}

// emitSettled writes an output held until its batch's turn. Its batch is
// settled by then, so a failure can only be counted for Close.
func (s *Exec) emitSettled(seq int64, h *heldOutput) {
	if s.emit(h) == nil {
		return
	}
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	if s.lost == 0 {
		s.lostSeq = seq
	}
	s.lost++
}

// run is one execution of the command.
type run struct {
	argv           []string
	stdin          []byte // nil: /dev/null
	stdout         io.Writer
	records, bytes int // what the command is given
}

// errTimeout is the cause of a run stopped by --timeout.
var errTimeout = errors.New("timed out")

func (s *Exec) run(ctx context.Context, b *batcher.Batch, r *run) error {
	rctx := ctx
	if s.timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeoutCause(ctx, s.timeout, errTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(rctx, s.path)
	cmd.Args = r.argv
	cmd.Env = s.environ(b, r.records, r.bytes)
	if r.stdin != nil {
		cmd.Stdin = bytes.NewReader(r.stdin)
	}
	// Never stdout's descriptor itself, even at -j 1: through a pipe, a
	// run ends only once its background processes let go of its output
	// (or --kill-after has passed), and a broken pipe is seen.
	var out *outWriter
	if _, ok := r.stdout.(*heldOutput); ok || r.stdout == nil {
		cmd.Stdout = r.stdout
	} else {
		out = &outWriter{w: r.stdout}
		cmd.Stdout = out
	}
	errw := &lineWriter{w: s.stderr}
	cmd.Stderr = errw
	// A group of its own: a terminal's Ctrl-C reaches only batchpipe, which
	// lets runs finish, and a stopped run is stopped with its children.
	// Should batchpipe die before it can stop them (kill -9), the guardian
	// kills the group (internal/guard); until the group is in its table,
	// the parent-death signal kills the command. Linux sends that when the
	// thread that started the command ends: the thread is kept until the
	// command is waited for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.guard.Start(); err != nil {
		s.log.Warn("exec sink: " + err.Error())
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cancelled atomic.Bool
	cmd.Cancel = func() error {
		cancelled.Store(true)
		sig := syscall.SIGKILL // a second signal: at once
		if cause := context.Cause(rctx); errors.Is(cause, errTimeout) || errors.Is(cause, batcher.ErrShutdownTimeout) {
			sig = syscall.SIGTERM // then SIGKILL after WaitDelay
		}
		if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return os.ErrProcessDone
			}
			return err
		}
		return nil
	}
	cmd.WaitDelay = s.killAfter

	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.E2BIG) {
			return batcher.Permanent(fmt.Errorf("exec sink: run %s: %w", s.name, err))
		}
		return fmt.Errorf("exec sink: run %s: %w", s.name, err)
	}
	pgid := cmd.Process.Pid
	s.groupsMu.Lock()
	s.groups[pgid] = true
	s.groupsMu.Unlock()
	if err := s.guard.Add(pgid); err != nil {
		s.log.Warn("exec sink: " + err.Error())
	}
	defer func() {
		s.groupsMu.Lock()
		delete(s.groups, pgid)
		s.groupsMu.Unlock()
		if err := s.guard.Remove(pgid); err != nil {
			s.log.Warn("exec sink: " + err.Error())
		}
	}()
	err := cmd.Wait()
	errw.finish()
	if out != nil && out.err != nil {
		syscall.Kill(-pgid, syscall.SIGKILL)
		return outputLost(s.name, out.err)
	}
	if cancelled.Load() {
		// Whatever of the group outlived the command and the grace period
		// (or held its pipes until then) goes now.
		syscall.Kill(-pgid, syscall.SIGKILL)
		if errors.Is(context.Cause(rctx), errTimeout) {
			return fmt.Errorf("exec sink: %s: timed out after %v%s", s.name, s.timeout, errw.lastLine())
		}
		if cmd.ProcessState != nil && cmd.ProcessState.Success() {
			// It finished its work after all, given SIGTERM: delivered.
			// Counting it undelivered would have a replay send it again.
			return nil
		}
		return fmt.Errorf("exec sink: %s: stopped: %w", s.name, context.Cause(ctx))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrWaitDelay):
		// Exit status 0 is success even though processes it left in the
		// background kept its pipes open past the grace period. They go
		// now, or each would outlive batchpipe.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return nil
	case errors.As(err, &ee):
		return fmt.Errorf("exec sink: %s: %s%s", s.name, exitStatus(ee), errw.lastLine())
	default:
		return fmt.Errorf("exec sink: %s: %w", s.name, err)
	}
}

// exitStatus describes how a command failed.
func exitStatus(ee *exec.ExitError) string {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ee.ExitCode())
}

// environ is the run's environment: batchpipe's, then what it is given.
func (s *Exec) environ(b *batcher.Batch, records, size int) []string {
	env := make([]string, len(s.env), len(s.env)+12)
	copy(env, s.env)
	env = append(env,
		"BATCHPIPE_SEQ="+strconv.FormatInt(b.Seq, 10),
		"BATCHPIPE_RECORDS="+strconv.Itoa(records),
		"BATCHPIPE_BYTES="+strconv.Itoa(size),
		"BATCHPIPE_REASON="+b.Reason.String(),
		"BATCHPIPE_ATTEMPT="+strconv.Itoa(b.Attempt),
		"BATCHPIPE_RUN="+RunID(), // as {run}: names that no other run gives
	)
	v := BatchValues(b, time.Now())
	if v.SpanOK {
		env = append(env,
			"BATCHPIPE_TOPIC="+v.Get("topic"),
			"BATCHPIPE_PARTITION="+v.Get("partition"),
			"BATCHPIPE_FIRST_OFFSET="+v.Get("first_offset"),
			"BATCHPIPE_LAST_OFFSET="+v.Get("last_offset"),
			"BATCHPIPE_BATCH_ID="+v.Get("batch_id"),
		)
	}
	if v.Keyed {
		env = append(env, "BATCHPIPE_KEY="+envEscape(v.Get("key")))
	}
	return env
}

// lockedWriter makes each Write whole with respect to other runs'.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// maxStderrLine bounds the partial line a run's stderr writer holds: a
// longer line is passed on in pieces.
const maxStderrLine = 64 << 10

// lineWriter passes a run's stderr on in whole lines, so that parallel runs
// never mix within a line, and remembers its last line for error messages.
type lineWriter struct {
	w       io.Writer
	partial []byte
	last    []byte // last non-empty line, at most lastLineMax bytes
}

const lastLineMax = 200

func (l *lineWriter) Write(p []byte) (int, error) {
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 {
		l.partial = append(l.partial, p...)
		if len(l.partial) >= maxStderrLine {
			l.remember(l.partial)
			l.w.Write(l.partial)
			l.partial = l.partial[:0]
		}
		return len(p), nil
	}
	lines := p[:i+1]
	if len(l.partial) > 0 {
		l.partial = append(l.partial, lines...)
		lines = l.partial
	}
	l.remember(lines[:len(lines)-1])
	// A failing stderr must not fail the run: the data went elsewhere.
	l.w.Write(lines)
	l.partial = append(l.partial[:0], p[i+1:]...)
	return len(p), nil
}

// remember keeps the last non-empty line of text that ends a line.
func (l *lineWriter) remember(text []byte) {
	for len(text) > 0 {
		j := bytes.LastIndexByte(text, '\n')
		line := bytes.TrimSpace(text[j+1:])
		if len(line) > 0 {
			if len(line) > lastLineMax {
				line = line[len(line)-lastLineMax:]
			}
			l.last = append(l.last[:0], line...)
			return
		}
		if j < 0 {
			return
		}
		text = text[:j]
	}
}

// finish passes on an unterminated last line, ending it so that the next
// run's output starts on a line of its own.
func (l *lineWriter) finish() {
	if len(l.partial) == 0 {
		return
	}
	l.remember(l.partial)
	l.w.Write(append(l.partial, '\n'))
	l.partial = nil
}

// lastLine is the last line of stderr, for an error message.
func (l *lineWriter) lastLine() string {
	if len(l.last) == 0 {
		return ""
	}
	return fmt.Sprintf("; stderr: %q", l.last)
}

// heldOutput holds one run's stdout until it can be written whole: the
// first heldOutputMemory bytes in memory, the rest in an unlinked
// temporary file, so memory stays bounded whatever a command prints.
type heldOutput struct {
	mem  []byte
	file *os.File
}

func (h *heldOutput) Write(p []byte) (int, error) {
	if h.file == nil && len(h.mem)+len(p) <= heldOutputMemory {
		h.mem = append(h.mem, p...)
		return len(p), nil
	}
	if h.file == nil {
		f, err := os.CreateTemp("", "batchpipe-output-*")
		if err != nil {
			return 0, fmt.Errorf("hold output: %w", err)
		}
		os.Remove(f.Name()) // gone with the last descriptor, even after a crash
		h.file = f
	}
	n, err := h.file.Write(p)
	if err != nil {
		err = fmt.Errorf("hold output: %w", err)
	}
	return n, err
}

// WriteTo writes everything held to w.
func (h *heldOutput) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(h.mem)
	total := int64(n)
	if err != nil || h.file == nil {
		return total, err
	}
	if _, err := h.file.Seek(0, io.SeekStart); err != nil {
		return total, err
	}
	m, err := io.Copy(w, h.file)
	return total + m, err
}

func (h *heldOutput) empty() bool { return len(h.mem) == 0 && h.file == nil }

// Close frees what h holds.
func (h *heldOutput) Close() {
	h.mem = nil
	if h.file != nil {
		h.file.Close()
		h.file = nil
	}
}

// Command-line limits (Linux's; elsewhere, argLimit is conservative).
const (
	// maxArgStrlen is the longest single argument, its NUL included
	// (MAX_ARG_STRLEN: 32 pages).
	maxArgStrlen = 32 * 4096
	ptrSize      = 8
	// envReserve covers the BATCHPIPE_* variables added to every run,
	// a Kafka topic name (at most 249 bytes) included.
	envReserve = 1024
	// argHeadroom is kept free, as xargs does, against miscounting.
	argHeadroom = 4096
)

// argLimit is the room execve has for argument and environment strings with
// their pointers: a quarter of the stack limit, between 128 KiB and 6 MiB.
func argLimit() int {
	if runtime.GOOS != "linux" {
		return 256 << 10
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &rl); err != nil {
		return 128 << 10
	}
	return int(min(max(rl.Cur/4, 128<<10), 6<<20))
}

// argv builds command lines for --args.
type argv struct {
	argv  []string
	holes []int // {} in each argument; nil: records are appended
	m     int   // copies of a record on the command line
	fixed int   // bytes each record adds besides its copies
	room  int   // bytes left for records

	fixedArgs int // bytes of the arguments without {}, pointers included
}

func newArgv(path string, args, env []string) (*argv, error) {
	a := &argv{argv: args}
	used := len(path) + 1 // the kernel copies the file name too
	for _, e := range env {
		used += len(e) + 1 + ptrSize
	}
	used += envReserve + argHeadroom
	for i, arg := range args {
		n := 0
		if i > 0 {
			n = strings.Count(arg, "{}")
		}
		if n == 0 {
			a.fixedArgs += len(arg) + 1 + ptrSize
			continue
		}
		if a.holes == nil {
			a.holes = make([]int, len(args))
		}
		a.holes[i] = n
		a.m += n
		a.fixed += len(arg) - 2*n + 1 + ptrSize
	}
	if a.holes == nil {
		a.m, a.fixed = 1, 1+ptrSize
	}
	used += a.fixedArgs
	limit := argLimit()
	a.room = limit - used
	if a.room < a.m+a.fixed {
		return nil, fmt.Errorf("exec sink: the environment and arguments take %d of the %d bytes a command line may have: no room for records", used, limit)
	}
	return a, nil
}

// batchLimits: a batch of records r1…rn with Σ(len+1+overhead) ≤ maxBytes
// costs Σ(m·len + fixed) ≤ m·Σ(len+1+overhead) ≤ room, since
// m·(1+overhead) ≥ fixed.
func (a *argv) batchLimits() (maxBytes, perRecordOverhead int) {
	overhead := (a.fixed+a.m-1)/a.m - 1
	return a.room / a.m, max(overhead, 0)
}

// cost is what record r adds to the command line.
func (a *argv) cost(r []byte) int { return a.m*len(r) + a.fixed }

// build returns the command line for b and the records that cannot be
// arguments.
func (a *argv) build(b *batcher.Batch) ([]string, *batcher.RejectError) {
	n := b.Len()
	var rej *batcher.RejectError
	recs := make([]string, 0, n)
	for i := range n {
		r := b.Record(i)
		if err := a.refuse(r); err != nil {
			if rej == nil {
				rej = &batcher.RejectError{}
			}
			rej.Records = append(rej.Records, batcher.Rejected{Index: i,
				Err: fmt.Errorf("exec sink: %s: %w", b.Pos(i), err)})
			continue
		}
		recs = append(recs, string(r))
	}
	if a.holes == nil {
		out := make([]string, 0, len(a.argv)+len(recs))
		return append(append(out, a.argv...), recs...), rej
	}
	out := make([]string, 0, len(a.argv)+len(recs)*a.m)
	for i, arg := range a.argv {
		if a.holes[i] == 0 {
			out = append(out, arg)
			continue
		}
		for _, r := range recs {
			out = append(out, strings.ReplaceAll(arg, "{}", r))
		}
	}
	return out, rej
}

// refuse says why record r cannot be an argument, if it cannot.
func (a *argv) refuse(r []byte) error {
	if i := bytes.IndexByte(r, 0); i >= 0 {
		return fmt.Errorf("record holds a NUL byte (at byte %d), which cannot be in an argument", i)
	}
	if runtime.GOOS == "linux" && a.longest(len(r))+1 > maxArgStrlen {
		return fmt.Errorf("record of %d bytes is too long for an argument (at most %d bytes)", len(r), maxArgStrlen-1)
	}
	if a.cost(r) > a.room {
		return fmt.Errorf("record of %d bytes does not fit on a command line (%d bytes free)", len(r), a.room)
	}
	return nil
}

// longest is the length of the longest argument made from a record of n
// bytes.
func (a *argv) longest(n int) int {
	if a.holes == nil {
		return n
	}
	l := 0
	for i, h := range a.holes {
		if h > 0 {
			l = max(l, len(a.argv[i])-2*h+h*n)
		}
	}
	return l
}

// check guards against a batch cut too large for the command line, which
// the batching limits should make impossible.
func (a *argv) check(argv []string) error {
	size := -a.fixedArgs
	for _, s := range argv {
		size += len(s) + 1 + ptrSize
	}
	if size > a.room {
		return batcher.Permanent(fmt.Errorf("exec sink: records take %d bytes of command line, more than the %d free", size, a.room))
	}
	return nil
}
