// Package guard keeps the commands batchpipe runs from outliving it, even
// when batchpipe dies without a chance to stop them: kill -9, the OOM
// killer, a crash.
//
// A guardian is a small process, batchpipe's own binary started again with
// BATCHPIPE_GUARD set, in a process group of its own. It reads a pipe whose
// write end only batchpipe holds, on which batchpipe tells it of each
// process group it starts and of each one it has waited for. When the pipe
// reaches end of file, batchpipe is gone, however it went: the guardian
// SIGKILLs every group still running that it was told of, and exits.
//
// Why not the parent-death signal alone: it reaches the command, not what
// the command started (sh -c 'sleep 30; cat'), and Linux sends it when the
// thread that started the command ends, not the process. Why not a
// subreaper: a batchpipe that is dead reaps nothing, and orphans go up to
// the next one.
package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// envGuard, set to 1, makes batchpipe a guardian: see Main.
const envGuard = "BATCHPIPE_GUARD"

// serves says that this binary calls Main first thing, so that it can be
// started as a guardian. A test binary does not: started again, it would
// run its tests.
var serves bool

// Main runs this process as a guardian, reading its stdin, and exits, if it
// was started as one; else it returns, and from then on New gives guards.
// It is called first thing in main, before any goroutine of batchpipe's.
func Main() {
	if os.Getenv(envGuard) != "1" {
		serves = true
		return
	}
	os.Exit(Serve(os.Stdin))
}

// Serve is the guardian: it follows the groups told of on r until r ends,
// then SIGKILLs those left, and returns the exit status.
func Serve(r io.Reader) int {
	// Signals meant for batchpipe (pkill -x batchpipe, a terminal's) must
	// not stop the one process that cleans up after it.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	// Named apart in ps, and kept out of pkill -x batchpipe.
	os.WriteFile("/proc/self/comm", []byte("batchpipe-guard"), 0)
	groups := make(map[int]bool)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	// End of file, or the pipe broke: batchpipe is gone, or about to be.
	for pgid := range groups {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	return 0
}

// A Guard is batchpipe's end of a guardian, started with the first Start.
// Its methods may be called at once from several goroutines; a nil Guard
// guards nothing.
type Guard struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	w      *os.File // the pipe's write end; nil until started, and after a failure
	closed bool
	failed bool // told once, through the error returned
}

// New returns a Guard, or nil where this binary cannot be a guardian (a
// test's).
func New() *Guard {
	if !serves {
		return nil
	}
	return &Guard{}
}

// closeWait bounds how long Close waits for the guardian to exit: it has
// nothing to do but kill, unless something stopped it (SIGSTOP).
const closeWait = 2 * time.Second

// Start starts the guardian, unless it was started already. Call it before
// starting a command, so that the command is guarded from its start. An
// error is returned once; the guard guards nothing from then on.
func (g *Guard) Start() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w != nil || g.closed || g.failed {
		return nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return g.fail(fmt.Errorf("guardian: pipe: %w", err))
	}
	defer r.Close()
	// /proc/self/exe, not the path batchpipe was started from: the same
	// binary even if an upgrade has replaced that file since.
	c := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"batchpipe-guard"}, Env: []string{envGuard + "=1"}, Stdin: r}
	// A group of its own: signals sent to batchpipe's group (a terminal's
	// Ctrl-C, kill -9 -PGID) do not reach it.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		w.Close()
		return g.fail(fmt.Errorf("guardian: start: %w", err))
	}
	g.cmd, g.w = c, w
	return nil
}

// fail gives up guarding; under mu.
func (g *Guard) fail(err error) error {
	g.failed = true
	if g.w != nil {
		g.w.Close()
		g.w = nil
	}
	return fmt.Errorf("%w; a command may outlive batchpipe if batchpipe is killed", err)
}

// Add tells the guardian of process group pgid.
func (g *Guard) Add(pgid int) error { return g.tell('+', pgid) }

// Remove tells the guardian that group pgid was waited for: its number may
// be given to another group from then on.
func (g *Guard) Remove(pgid int) error { return g.tell('-', pgid) }

func (g *Guard) tell(op byte, pgid int) error {
	if g == nil {
		return nil
	}
	var buf [24]byte
	msg := strconv.AppendInt(append(buf[:0], op), int64(pgid), 10)
	msg = append(msg, '\n')
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w == nil {
		return nil
	}
	// One write of a few bytes, under PIPE_BUF: whole, never mixed.
	if _, err := g.w.Write(msg); err != nil {
		return g.fail(fmt.Errorf("guardian: %w", err))
	}
	return nil
}

// Close closes the pipe, upon which the guardian SIGKILLs the groups still
// told of and exits, and waits for it. It is called once no command runs,
// or once those still running are abandoned.
func (g *Guard) Close() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	if g.cmd == nil {
		return nil
	}
	if g.w != nil {
		g.w.Close()
		g.w = nil
	}
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("guardian: %w", err)
		}
		return err
	case <-t.C:
		return fmt.Errorf("guardian: pid %d still running %v after its pipe closed", g.cmd.Process.Pid, closeWait)
	}
}
