// One run of the exec sink's command: its context, stdin, environment and
// exit status.

package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

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
	c := s.command(rctx, b, r)
	if err := s.guard.Start(); err != nil {
		s.log.Warn("exec sink: " + err.Error())
	}
	// Linux sends the parent-death signal when the thread that started the
	// command ends: the thread is kept until the command is waited for.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.Start(); err != nil {
		if errors.Is(err, syscall.E2BIG) {
			return batcher.Permanent(fmt.Errorf("exec sink: run %s: %w", s.name, err))
		}
		return fmt.Errorf("exec sink: run %s: %w", s.name, err)
	}
	defer s.track(c.Process.Pid)()
	err := c.Wait()
	c.errw.finish()
	return s.outcome(ctx, rctx, c, err)
}

// A runCmd is the command of one run, with what run reads after Wait.
type runCmd struct {
	*exec.Cmd
	out       *outWriter // nil when stdout is not ours to watch
	errw      *lineWriter
	cancelled atomic.Bool // stopped by rctx's end
}

// command prepares the command of run r, stopped when rctx ends.
func (s *Exec) command(rctx context.Context, b *batcher.Batch, r *run) *runCmd {
	cmd := exec.CommandContext(rctx, s.path)
	c := &runCmd{Cmd: cmd, errw: &lineWriter{w: s.stderr}}
	cmd.Args = r.argv
	cmd.Env = s.environ(b, r.records, r.bytes)
	if r.stdin != nil {
		cmd.Stdin = bytes.NewReader(r.stdin)
	}
	// Never stdout's descriptor itself, even at -j 1: through a pipe, a
	// run ends only once its background processes let go of its output
	// (or --kill-after has passed), and a broken pipe is seen.
	if _, ok := r.stdout.(*heldOutput); ok || r.stdout == nil {
		cmd.Stdout = r.stdout
	} else {
		c.out = &outWriter{w: r.stdout}
		cmd.Stdout = c.out
	}
	cmd.Stderr = c.errw
	// A group of its own: a terminal's Ctrl-C reaches only batchpipe, which
	// lets runs finish, and a stopped run is stopped with its children.
	// Should batchpipe die before it can stop them (kill -9), the guardian
	// kills the group (internal/guard); until the group is in its table,
	// the parent-death signal kills the command.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		c.cancelled.Store(true)
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
	return c
}

// track notes the process group pgid, for Kill and the guardian, until
// the returned function is called.
func (s *Exec) track(pgid int) (untrack func()) {
	s.groupsMu.Lock()
	s.groups[pgid] = true
	s.groupsMu.Unlock()
	if err := s.guard.Add(pgid); err != nil {
		s.log.Warn("exec sink: " + err.Error())
	}
	return func() {
		s.groupsMu.Lock()
		delete(s.groups, pgid)
		s.groupsMu.Unlock()
		if err := s.guard.Remove(pgid); err != nil {
			s.log.Warn("exec sink: " + err.Error())
		}
	}
}

// outcome says how the run of c ended, given Wait's err: delivered (nil)
// or why not; ctx is the delivery's, rctx the run's, with its timeout.
func (s *Exec) outcome(ctx, rctx context.Context, c *runCmd, err error) error {
	pgid := c.Process.Pid
	if c.out != nil && c.out.err != nil {
		syscall.Kill(-pgid, syscall.SIGKILL)
		return outputLost(s.name, c.out.err)
	}
	if c.cancelled.Load() {
		// Whatever of the group outlived the command and the grace period
		// (or held its pipes until then) goes now.
		syscall.Kill(-pgid, syscall.SIGKILL)
		if errors.Is(context.Cause(rctx), errTimeout) {
			return fmt.Errorf("exec sink: %s: timed out after %v%s", s.name, s.timeout, c.errw.lastLine())
		}
		if c.ProcessState != nil && c.ProcessState.Success() {
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
		syscall.Kill(-pgid, syscall.SIGKILL)
		return nil
	case errors.As(err, &ee):
		return fmt.Errorf("exec sink: %s: %s%s", s.name, exitStatus(ee), c.errw.lastLine())
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
