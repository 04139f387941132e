package cmd

import (
	"io"
	"os"
	"syscall"
	"unsafe"

	"github.com/mattn/go-isatty"
)

// Streams are the process's standard streams, passed in so tests can
// replace them.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer

	// ErrIsTerminal says a person is watching stderr: progress and colour
	// are for them only.
	ErrIsTerminal bool
}

// inputWaiting reports whether stdin is a file with bytes left to read or a
// pipe with bytes in it: input that a run reading Kafka would ignore. (A
// pipe whose writer has not written yet cannot be told from an idle one.)
func (s Streams) inputWaiting() bool {
	f, ok := s.In.(*os.File)
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

// inTerminal reports whether stdin is a terminal: records typed by hand,
// or a command line that forgot its input.
func (s Streams) inTerminal() bool {
	f, ok := s.In.(*os.File)
	is := false
	if ok {
		withFd(f, func(fd uintptr) { is = isatty.IsTerminal(fd) })
	}
	return is
}

// withFd calls do with f's descriptor. Unlike f.Fd, it leaves f in the
// mode it was, non-blocking or not.
func withFd(f *os.File, do func(fd uintptr)) bool {
	rc, err := f.SyscallConn()
	return err == nil && rc.Control(do) == nil
}

// statusLine decides whether the status line is drawn: with --progress
// auto (mode), where a person watches stderr, not on a dumb terminal and
// not with -q. Output to the same terminal (exec, file -) then passes
// through the status line (see newRunning), which never mixes with it.
func (s Streams) statusLine(mode string, quiet bool) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	return s.ErrIsTerminal && !quiet && !s.dumb()
}

// dumb reports TERM=dumb: a terminal that cannot erase a line, so the
// status line is written as lines of its own, without colour.
func (s Streams) dumb() bool { return os.Getenv("TERM") == "dumb" }

// color reports whether stderr may be coloured: a terminal, and neither
// NO_COLOR nor a dumb terminal.
func (s Streams) color() bool {
	_, noColor := os.LookupEnv("NO_COLOR")
	return s.ErrIsTerminal && !noColor && !s.dumb()
}

// sameTerminal reports whether stdout and stderr are the same terminal.
func (s Streams) sameTerminal() bool {
	fa, ok := s.Out.(*os.File)
	if !ok {
		return false
	}
	fb, ok := s.Err.(*os.File)
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
