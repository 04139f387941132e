// Package guard keeps the commands batchpipe runs from outliving it, even
// when batchpipe dies without a chance to stop them: kill -9, the OOM
// killer, a crash.
//
// A guardian is a small process, batchpipe's own binary started again with
// BATCHPIPE_GUARD set, in a process group of its own. It shares two things
// with batchpipe: a table in memory (a memfd) where batchpipe writes the
// process group of each command it starts and clears it once the command
// was waited for, and a pipe whose write end only batchpipe holds. The
// guardian sleeps in a read of the pipe; at end of file batchpipe is gone,
// however it went, and the guardian SIGKILLs every group left in the table.
// Writing the table costs batchpipe two small writes per command, and the
// guardian no wake-up at all.
//
// Why not the parent-death signal alone: it reaches the command, not what
// the command started (sh -c 'sleep 30; cat'), and Linux sends it when the
// thread that started the command ends, not the process. Why not a
// subreaper: a batchpipe that is dead reaps nothing, and orphans go up to
// the next one.
package guard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// envGuard, set to 1, makes batchpipe a guardian: see Main.
const envGuard = "BATCHPIPE_GUARD"

// Slots is how many commands can be guarded at once: -j at its largest.
const Slots = 1024

// slotSize is the bytes of a slot: a process group, as a little-endian
// uint32; 0 is a free slot.
const slotSize = 4

// serves says that this binary calls Main first thing, so that it can be
// started as a guardian. A test binary does not: started again, it would
// run its tests.
var serves bool

// Main runs this process as a guardian and exits, if it was started as
// one; else it returns, and from then on New gives guards. It is called
// first thing in main.
func Main() {
	if os.Getenv(envGuard) != "1" {
		serves = true
		return
	}
	os.Exit(Serve(os.Stdin, os.NewFile(3, "table")))
}

// Serve is the guardian: it waits for life to end, then SIGKILLs the
// process groups in table, and returns the exit status.
func Serve(life io.Reader, table io.ReaderAt) int {
	// Signals meant for batchpipe (pkill -x batchpipe, a terminal's) must
	// not stop the one process that cleans up after it.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	// Named apart in ps, and kept out of pkill -x batchpipe.
	os.WriteFile("/proc/self/comm", []byte("batchpipe-guard"), 0)
	// Nothing is ever written: a read ends at end of file, or on an error
	// that means the same.
	io.Copy(io.Discard, life)
	buf := make([]byte, Slots*slotSize)
	n, _ := table.ReadAt(buf, 0)
	for i := 0; i+slotSize <= n; i += slotSize {
		if pgid := int(binary.LittleEndian.Uint32(buf[i:])); pgid > 1 {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	return 0
}

// A Guard is batchpipe's end of a guardian, started by the first Start.
// Its methods may be called at once from several goroutines; a nil Guard
// guards nothing.
type Guard struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	life   *os.File    // the pipe's write end; nil until started, and once closed
	table  *os.File    // nil until started, and after a failure
	slots  map[int]int // slot of each group in the table
	free   []int       // slots free
	closed bool
	failed bool // said once, through the error returned
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
	if g.table != nil || g.closed || g.failed {
		return nil
	}
	fd, err := unix.MemfdCreate("batchpipe-guard", unix.MFD_CLOEXEC)
	if err != nil {
		return g.fail(fmt.Errorf("guardian: memfd: %w", err))
	}
	table := os.NewFile(uintptr(fd), "batchpipe-guard")
	if err := table.Truncate(Slots * slotSize); err != nil {
		table.Close()
		return g.fail(fmt.Errorf("guardian: table: %w", err))
	}
	r, w, err := os.Pipe()
	if err != nil {
		table.Close()
		return g.fail(fmt.Errorf("guardian: pipe: %w", err))
	}
	defer r.Close()
	// /proc/self/exe, not the path batchpipe was started from: the same
	// binary even if an upgrade has replaced that file since.
	c := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"batchpipe-guard"},
		Env: []string{envGuard + "=1"}, Stdin: r, ExtraFiles: []*os.File{table}}
	// A group of its own: signals sent to batchpipe's group (a terminal's
	// Ctrl-C, kill -9 -PGID) do not reach it.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		table.Close()
		w.Close()
		return g.fail(fmt.Errorf("guardian: start: %w", err))
	}
	g.cmd, g.life, g.table = c, w, table
	g.slots = make(map[int]int)
	g.free = make([]int, Slots)
	for i := range g.free {
		g.free[i] = Slots - 1 - i
	}
	return nil
}

// fail gives up guarding; under mu.
func (g *Guard) fail(err error) error {
	g.failed = true
	if g.table != nil {
		g.table.Close()
		g.table = nil
	}
	return fmt.Errorf("%w; a command may outlive batchpipe if batchpipe is killed", err)
}

// Add puts process group pgid in the table.
func (g *Guard) Add(pgid int) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.table == nil || g.closed {
		return nil
	}
	if len(g.free) == 0 {
		return fmt.Errorf("guardian: more than %d commands at once: process group %d is not guarded", Slots, pgid)
	}
	slot := g.free[len(g.free)-1]
	if err := g.write(slot, pgid); err != nil {
		return err
	}
	g.free = g.free[:len(g.free)-1]
	g.slots[pgid] = slot
	return nil
}

// Remove takes group pgid out of the table once it was waited for: its
// number may be given to another group from then on.
func (g *Guard) Remove(pgid int) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	slot, ok := g.slots[pgid]
	if !ok || g.table == nil || g.closed {
		return nil
	}
	if err := g.write(slot, 0); err != nil {
		return err
	}
	delete(g.slots, pgid)
	g.free = append(g.free, slot)
	return nil
}

// write sets a slot of the table; under mu.
func (g *Guard) write(slot, pgid int) error {
	var b [slotSize]byte
	binary.LittleEndian.PutUint32(b[:], uint32(pgid))
	if _, err := g.table.WriteAt(b[:], int64(slot*slotSize)); err != nil {
		return g.fail(fmt.Errorf("guardian: table: %w", err))
	}
	return nil
}

// Close ends the pipe, upon which the guardian SIGKILLs the groups left in
// the table and exits, and waits for it. It is called once no command
// runs, or once those still running are abandoned.
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
	g.life.Close()
	if g.table != nil {
		g.table.Close()
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
