package guard

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The test binary is the guardian its tests start.
	Main()
	goleak.VerifyTestMain(m)
}

// A sleeper is a sleep in a process group of its own.
type sleeper struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once waited for; err is set
	err  error
}

func sleepGroup(t *testing.T) *sleeper {
	t.Helper()
	s := &sleeper{cmd: exec.Command("sleep", "600"), done: make(chan struct{})}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	return s
}

// killedBy says which signal ended s, or fails after a while.
func (s *sleeper) killedBy(t *testing.T) syscall.Signal {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("still running")
	}
	var ee *exec.ExitError
	if !errors.As(s.err, &ee) {
		t.Fatalf("exited with %v, not killed", s.err)
	}
	return ee.Sys().(syscall.WaitStatus).Signal()
}

// TestGuardianKillsWhatIsLeft: once its pipe ends, the guardian SIGKILLs
// the groups it was told of and not told were waited for, and only those.
func TestGuardianKillsWhatIsLeft(t *testing.T) {
	g := New()
	if g == nil {
		t.Fatal("no guard, though this binary serves as guardian")
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	left, waited := sleepGroup(t), sleepGroup(t)
	for _, err := range []error{g.Add(left.cmd.Process.Pid), g.Add(waited.cmd.Process.Pid), g.Remove(waited.cmd.Process.Pid)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// As when batchpipe dies: the pipe's write end closes.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if sig := left.killedBy(t); sig != syscall.SIGKILL {
		t.Errorf("the group left was ended by %v, want SIGKILL", sig)
	}
	// The guardian has exited: a SIGKILL of its would have come first.
	waited.cmd.Process.Signal(syscall.SIGTERM)
	if sig := waited.killedBy(t); sig != syscall.SIGTERM {
		t.Errorf("a group waited for was ended by %v, not left alone", sig)
	}
	if err := g.Add(1234); err != nil {
		t.Errorf("Add after Close: %v", err)
	}
}

// TestNilGuard: a test binary that does not serve as guardian gets no
// guard, and a nil guard guards nothing without failing.
func TestNilGuard(t *testing.T) {
	var g *Guard
	for _, err := range []error{g.Start(), g.Add(1), g.Remove(1), g.Close()} {
		if err != nil {
			t.Fatal(err)
		}
	}
}
