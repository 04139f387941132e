package sources

import (
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// waker waits until a file descriptor has input, or until another
// goroutine wakes it: a read then starts only when it will not block, so a
// stop never leaves one waiting that takes input after the stop (the bytes
// of such a read would arrive when nothing is left to deliver them).
type waker struct {
	fd     int    // the input's; -1 when the reader has none
	wakeFd [2]int // a pipe: a byte in it wakes wait
}

func newWaker(r io.Reader) (*waker, error) {
	w := &waker{fd: -1, wakeFd: [2]int{-1, -1}}
	sc, ok := r.(syscall.Conn)
	if !ok {
		return w, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return w, nil
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return w, nil
	}
	if err := unix.Pipe2(w.wakeFd[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("stdin: wake-up pipe: %w", err)
	}
	w.fd = fd
	return w, nil
}

// canWait reports whether wait can be woken: the reader has a descriptor.
func (w *waker) canWait() bool { return w.fd >= 0 }

// wait returns true once the input is ready to be read (or at its end, or
// failed: the read says which), false once woken.
func (w *waker) wait() (bool, error) {
	if w.fd < 0 {
		return true, nil
	}
	fds := []unix.PollFd{
		{Fd: int32(w.wakeFd[0]), Events: unix.POLLIN},
		{Fd: int32(w.fd), Events: unix.POLLIN},
	}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return false, fmt.Errorf("poll: %w", err)
		case fds[0].Revents != 0:
			return false, nil
		case fds[1].Revents != 0:
			return true, nil
		}
	}
}

// wake ends a wait, and every wait after it until rearm.
func (w *waker) wake() {
	if w.fd >= 0 {
		unix.Write(w.wakeFd[1], []byte{0})
	}
}

// rearm undoes the wakes so far.
func (w *waker) rearm() {
	var b [16]byte
	for {
		if n, _ := unix.Read(w.wakeFd[0], b[:]); n <= 0 {
			return
		}
	}
}

func (w *waker) close() {
	if w.fd >= 0 {
		unix.Close(w.wakeFd[0])
		unix.Close(w.wakeFd[1])
	}
}
