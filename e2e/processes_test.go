//go:build linux

package e2e

// Helpers for the processes batchpipe starts: the exec sink's child (the
// test binary in a role), a gate it waits on, and pidfds to see it end.

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// execArgs is batchpipe's command line for an exec sink whose child is
// the test binary in role.
func execArgs(t *testing.T, flags []string, role string, childArgs ...string) []string {
	t.Helper()
	args := append(slices.Clone(flags), "--")
	argv := childCmd(t, role)
	// A race-enabled binary sleeps a second before a clean exit, unless
	// told not to.
	argv = slices.Insert(argv, 1, "GORACE=atexit_sleep_ms=0")
	args = append(args, argv...)
	return append(args, childArgs...)
}

// pidfdOpen opens a pidfd for pid, which stays valid after it is reaped.
func pidfdOpen(pid int) (int, error) {
	const sysPidfdOpen = 434
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// pidfdKill sends SIGKILL through a pidfd, which cannot hit a reused pid.
func pidfdKill(fd int) {
	const sysPidfdSendSignal = 424
	syscall.Syscall6(sysPidfdSendSignal, uintptr(fd), uintptr(syscall.SIGKILL), 0, 0, 0, 0)
}

// exited waits up to d for the process behind pidfd to end (a zombie has).
func exited(t *testing.T, pidfd int, d time.Duration) bool {
	t.Helper()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(ep)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(pidfd)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, pidfd, &ev); err != nil {
		t.Fatal(err)
	}
	events := make([]syscall.EpollEvent, 1)
	deadline := time.Now().Add(d)
	for {
		n, err := syscall.EpollWait(ep, events, int(time.Until(deadline).Milliseconds()))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
}

// shutGate returns the path of a file the "gate" child waits on, locked
// until open is called.
func shutGate(t *testing.T) (gate string, open func()) {
	t.Helper()
	gate = filepath.Join(t.TempDir(), "gate")
	lock, err := os.Create(gate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return gate, func() {
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
			t.Fatal(err)
		}
	}
}
