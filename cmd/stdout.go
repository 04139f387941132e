package cmd

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// stdoutClosed reports whether w is a stdout that was closed when batchpipe
// started (`batchpipe file - >&-`). The Go runtime opens /dev/null, read
// and write, in place of a closed standard descriptor; a shell's
// `>/dev/null` opens it write-only. Writing there would throw the data
// away while claiming it delivered.
func stdoutClosed(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	// Through SyscallConn, not Fd, which would make stdout blocking.
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	rc.Control(func(fd uintptr) {
		var st, null unix.Stat_t
		if unix.Fstat(int(fd), &st) != nil || unix.Stat(os.DevNull, &null) != nil {
			return
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != null.Rdev {
			return
		}
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		closed = err == nil && fl&unix.O_ACCMODE == unix.O_RDWR
	})
	return closed
}

// checkStdout refuses to write to a stdout that was closed at start.
func (o *options) checkStdout() error {
	if stdoutClosed(o.streams.Out) {
		return usagef("stdout is closed: give it somewhere to go (a file, a pipe, or >/dev/null to discard the output)")
	}
	return nil
}
