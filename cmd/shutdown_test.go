package cmd

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// closed reports whether c is closed, without waiting.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestShutdownFirstSignalDrainsSecondAbandons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sigs := make(chan os.Signal)
		sd := newShutdown(sigs, 0)
		defer sd.release()
		var announced []string
		sd.announce = func(s os.Signal, committing bool) {
			announced = append(announced, s.String())
			if committing {
				t.Error("announced a commit while delivering")
			}
		}
		sd.start()

		if closed(sd.stop) || sd.ctx.Err() != nil {
			t.Fatal("stopped before any signal")
		}
		sigs <- syscall.SIGTERM
		synctest.Wait()
		if !closed(sd.stop) {
			t.Fatal("stop not closed by the first signal")
		}
		if sd.ctx.Err() != nil || sd.drain.Err() != nil {
			t.Fatal("the first signal abandoned the drain")
		}
		sigs <- syscall.SIGINT
		synctest.Wait()
		if sd.ctx.Err() == nil || sd.drain.Err() == nil {
			t.Fatal("the second signal did not abandon the run")
		}
		if cause := context.Cause(sd.ctx); !strings.Contains(cause.Error(), "second signal (interrupt)") {
			t.Errorf("cause = %v", cause)
		}
		if got := sd.close(); got != syscall.SIGTERM {
			t.Errorf("stopping signal = %v, want the first, SIGTERM", got)
		}
		if len(announced) != 1 || announced[0] != syscall.SIGTERM.String() {
			t.Errorf("announced %q, want the first signal once", announced)
		}
	})
}

func TestShutdownTimeoutEndsDrainOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sigs := make(chan os.Signal)
		sd := newShutdown(sigs, 5*time.Second)
		defer sd.release()
		sd.start()
		defer sd.close()

		// No signal, no deadline: the timeout counts from the first one.
		// (A minute of the bubble's time, which passes at once.)
		<-time.NewTimer(time.Minute).C
		if sd.drain.Err() != nil {
			t.Fatal("drain ended without a signal")
		}
		sigs <- syscall.SIGHUP
		start := time.Now()
		<-sd.drain.Done()
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("drain ended after %v, want 5s", took)
		}
		if cause := context.Cause(sd.drain); !errors.Is(cause, batcher.ErrShutdownTimeout) ||
			!strings.Contains(cause.Error(), "--shutdown-timeout 5s") {
			t.Errorf("cause = %v", cause)
		}
		if sd.ctx.Err() != nil {
			t.Error("the timeout abandoned ctx: only a second signal does")
		}
	})
}

func TestShutdownFlushesMerge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sigs := make(chan os.Signal)
		sd := newShutdown(sigs, 0)
		defer sd.release()
		stats := 0
		sd.stats = func() { stats++ }
		sd.start()

		sigs <- syscall.SIGUSR1
		sigs <- syscall.SIGUSR1 // pending with the first: one flush
		sigs <- syscall.SIGUSR2
		synctest.Wait()
		<-sd.flush
		select {
		case <-sd.flush:
			t.Error("two flushes for two signals while one was pending")
		default:
		}
		sigs <- syscall.SIGUSR1
		synctest.Wait()
		<-sd.flush
		if closed(sd.stop) {
			t.Error("SIGUSR1 or SIGUSR2 stopped the run")
		}
		if got := sd.close(); got != nil {
			t.Errorf("stopping signal = %v, want none", got)
		}
		if stats != 1 { // read once the loop has returned
			t.Errorf("stats file written %d times, want 1", stats)
		}
	})
}

func TestShutdownQuitDumpsStacksThenStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sigs := make(chan os.Signal)
		sd := newShutdown(sigs, 0)
		defer sd.release()
		var order []string
		sd.stacks = func() { order = append(order, "stacks") }
		sd.announce = func(s os.Signal, committing bool) {
			order = append(order, "stop")
			if !committing {
				t.Error("announced delivering once deliveries were over")
			}
		}
		sd.finish()
		sd.start()

		sigs <- syscall.SIGQUIT
		synctest.Wait()
		if !closed(sd.stop) {
			t.Fatal("SIGQUIT did not stop the run")
		}
		if got := sd.close(); got != syscall.SIGQUIT {
			t.Errorf("stopping signal = %v", got)
		}
		if got := strings.Join(order, ","); got != "stacks,stop" {
			t.Errorf("order = %s, want stacks,stop", got)
		}
	})
}

func TestShutdownCloseEndsLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sd := newShutdown(make(chan os.Signal), time.Second)
		sd.start()
		// close returns only once the loop has: synctest fails the test
		// if a goroutine of the bubble is left behind.
		if sd.close() != nil {
			t.Error("a stopping signal without a signal")
		}
		sd.release()
	})
}
