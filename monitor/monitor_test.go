package monitor

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1k", 12345: "12.3k", 4_560_000: "4.56M", 2_000_000_000: "2G"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	p := &Progress{Color: true}
	line := p.line(batcher.Stats{Read: 5000, Delivered: 4000, BatchesDone: 4, InFlight: 1000, Retries: 2, DeadLettered: 3, Undelivered: 1}, 2500, 42)
	for _, want := range []string{"read 5k (2.5k/s)", "delivered 4k in 4 batches", "in flight 1k", "retries 2",
		"\x1b[33mdead-lettered 3\x1b[0m", "\x1b[31mfailed 1\x1b[0m", "lag 42"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if line := p.line(batcher.Stats{Read: 1, Delivered: 1, BatchesDone: 1}, 1, -1); !strings.Contains(line, "delivered 1 in 1 batch ·") {
		t.Errorf("%q: one batch is not %q", line, "1 batch")
	}
	if line := (&Progress{}).line(batcher.Stats{Read: 1}, 0, -1); strings.Contains(line, "lag") || strings.Contains(line, "\x1b") {
		t.Errorf("%q", line)
	}
}

func TestProgressRedrawsAndErases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		p := &Progress{W: &out, Stats: func() batcher.Stats { return batcher.Stats{Read: 100} }}
		stop := run(p)
		advance(time.Second + time.Millisecond)
		synctest.Wait()
		// Ten redraws a second, no more.
		if n := strings.Count(out.String(), "read 100"); n != 10 {
			t.Errorf("%d redraws in a second", n)
		}
		p.Log().Write([]byte("warning\n"))
		status := "read 100 (100/s) · delivered 0 in 0 batches · in flight 0"
		if !strings.HasSuffix(out.String(), "\r\x1b[Kwarning\n\r\x1b[K"+status) {
			t.Errorf("log line not on a clean line, or status not redrawn after it: %q", out.String()[max(0, out.Len()-100):])
		}
		stop()
		if !strings.HasSuffix(out.String(), status+"\r\x1b[K") {
			t.Errorf("status not erased: %q", out.String()[max(0, out.Len()-100):])
		}
	})
}

// Output through the progress's writers that ends mid-line holds the
// status back until the line is complete: drawn over it, the status would
// hide it, and what follows would be glued to the status.
func TestProgressWaitsForWholeLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		p := &Progress{W: &out, Stats: func() batcher.Stats { return batcher.Stats{Read: 7} }}
		stop := run(p)
		stdout := p.Through(&out)
		advance(150 * time.Millisecond)
		stdout.Write([]byte("par"))
		advance(time.Second)
		synctest.Wait()
		stdout.Write([]byte("tial\n"))
		stop()
		screen := out.String()
		if !strings.Contains(screen, "\r\x1b[Kpartial\n\r\x1b[Kread 7") || strings.Count(screen, "read 7") != 2 {
			t.Errorf("status drawn over a partial line, or not after it: %q", screen)
		}
	})
}

// With Quiet, output scrolling by is not interleaved with status lines:
// the line comes back only once the output has paused that long.
func TestProgressWaitsForQuietOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out lockedBuffer
		p := &Progress{W: &out, Stats: func() batcher.Stats { return batcher.Stats{Read: 7} }, Quiet: time.Second}
		stop := run(p)
		stdout := p.Through(&out)
		advance(150 * time.Millisecond) // drawn: no output yet
		for range 5 {
			stdout.Write([]byte("data\n"))
			advance(300 * time.Millisecond)
		}
		synctest.Wait()
		during := out.String()
		advance(1200 * time.Millisecond)
		synctest.Wait()
		stop()
		if n := strings.Count(during, "read 7"); n != 1 {
			t.Errorf("status drawn %d times while output scrolled, want once before it: %q", n, during)
		}
		if after := out.String()[len(during):]; !strings.Contains(after, "read 7") {
			t.Errorf("status not drawn again once the output paused: %q", after)
		}
	})
}

// The rate is over a window: a sink that takes input in bursts a second
// apart does not make it flicker to 0/s.
func TestProgressRateDoesNotFlicker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		start := time.Now()
		p := &Progress{W: &out, Stats: func() batcher.Stats {
			return batcher.Stats{Read: 100 * int64(time.Since(start)/time.Second)}
		}}
		stop := run(p)
		advance(10 * time.Second)
		stop()
		screen := out.String()
		after := screen[strings.Index(screen, "read 100 "):]
		if strings.Contains(after, "(0/s)") || !strings.Contains(after, "(100/s)") {
			t.Errorf("rate flickers: %q", after)
		}
	})
}

// TERM=dumb: no escape codes; the line is overwritten with spaces.
func TestProgressDumbTerminal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		p := &Progress{W: &out, Dumb: true, Stats: func() batcher.Stats { return batcher.Stats{Read: 3} }}
		stop := run(p)
		advance(250 * time.Millisecond)
		p.Log().Write([]byte("note\n"))
		stop()
		if s := out.String(); strings.Contains(s, "\x1b") || !strings.Contains(s, "read 3") || !strings.HasSuffix(s, " \r") {
			t.Errorf("dumb terminal got %q", s)
		}
	})
}

// run runs p until the returned stop, which returns once p is done.
func run(p *Progress) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}

// lockedBuffer is a bytes.Buffer to read while another goroutine writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// advance moves a synctest bubble's fake clock on by d.
func advance(d time.Duration) { <-time.NewTimer(d).C }

func TestNewReport(t *testing.T) {
	r := NewReport("file", batcher.Stats{Read: 10, Elapsed: 2 * time.Second})
	if r.RecordsPerSecond != 5 || r.FlushReasons == nil || r.Sink != "file" {
		t.Fatalf("%+v", r)
	}
}

// A group member's state: on the status line, and in the metrics.
func TestGroupState(t *testing.T) {
	g := GroupState{Group: "g", Generation: 7, Partitions: []string{"t[0]", "t[3]"}, Rebalances: 3, Paused: 1234 * time.Millisecond}
	p := &Progress{Group: func() GroupState { return g }}
	if line := p.line(batcher.Stats{}, 0, -1); !strings.HasSuffix(line, " · gen 7 · 2 partitions · rebalances 3 (paused 1.234s)") {
		t.Errorf("%q", line)
	}
	m := NewMetrics("file", func() batcher.Stats { return batcher.Stats{} }, nil).WithGroup(func() GroupState { return g })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`batchpipe_kafka_group_generation{sink="file"} 7`,
		`batchpipe_kafka_group_assigned_partitions{sink="file"} 2`,
		`batchpipe_kafka_group_rebalances_total{sink="file"} 3`,
		`batchpipe_kafka_group_rebalance_pause_seconds_total{sink="file"} 1.234`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, rec.Body.String())
		}
	}
}
