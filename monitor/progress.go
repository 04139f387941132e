// Package monitor shows what a run is doing: a status line for people at a
// terminal, a JSON stats file for cron jobs, and Prometheus metrics for
// long-running consumers.
package monitor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// Progress redraws one status line, at most ten times a second, until its
// context is done; then it erases the line so the summary can take its
// place. It is meant for a terminal only.
type Progress struct {
	W     io.Writer
	Stats func() batcher.Stats
	Lag   func() int64 // total consumer lag; nil when not reading Kafka
	Color bool

	Interval time.Duration // default 100ms

	mu sync.Mutex // one writer of the terminal at a time
}

// Log returns a writer for other output to the same terminal: each write
// first erases the status line, which is redrawn at the next tick.
func (p *Progress) Log() io.Writer { return logWriter{p} }

type logWriter struct{ p *Progress }

func (w logWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if _, err := io.WriteString(w.p.W, "\r\x1b[K"); err != nil {
		return 0, err
	}
	return w.p.W.Write(b)
}

func (p *Progress) draw(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.W, "\r\x1b[K"+s)
}

// Run draws until ctx is done. It returns once the line is erased.
func (p *Progress) Run(ctx context.Context) {
	every := p.Interval
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last batcher.Stats
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			p.draw("")
			return
		case now := <-tick.C:
			st := p.Stats()
			rate := float64(st.Read-last.Read) / now.Sub(lastAt).Seconds()
			last, lastAt = st, now
			var lag int64 = -1
			if p.Lag != nil {
				lag = p.Lag()
			}
			p.draw(p.line(st, rate, lag))
		}
	}
}

// line renders the status; lag < 0 means none.
func (p *Progress) line(st batcher.Stats, rate float64, lag int64) string {
	var b strings.Builder
	batches := "batches"
	if st.BatchesDone == 1 {
		batches = "batch"
	}
	fmt.Fprintf(&b, "read %s (%s/s) · delivered %s in %s %s · in flight %s",
		Count(st.Read), Count(int64(rate)), Count(st.Delivered), Count(st.BatchesDone), batches, Count(st.InFlight))
	if st.Retries > 0 {
		fmt.Fprintf(&b, " · retries %s", Count(st.Retries))
	}
	if st.DeadLettered > 0 {
		b.WriteString(" · " + p.paint(yellow, "dead-lettered "+Count(st.DeadLettered)))
	}
	if st.Undelivered > 0 {
		b.WriteString(" · " + p.paint(red, "failed "+Count(st.Undelivered)))
	}
	if lag >= 0 {
		fmt.Fprintf(&b, " · lag %s", Count(lag))
	}
	return b.String()
}

const (
	red    = "31"
	yellow = "33"
)

func (p *Progress) paint(color, s string) string {
	if !p.Color {
		return s
	}
	return "\x1b[" + color + "m" + s + "\x1b[0m"
}

// Count writes n briefly for people: 950, 12.3k, 4.56M.
func Count(n int64) string {
	switch {
	case n < 1000 && n > -1000:
		return fmt.Sprint(n)
	case n < 1_000_000 && n > -1_000_000:
		return trim(fmt.Sprintf("%.1f", float64(n)/1e3)) + "k"
	case n < 1_000_000_000 && n > -1_000_000_000:
		return trim(fmt.Sprintf("%.2f", float64(n)/1e6)) + "M"
	}
	return trim(fmt.Sprintf("%.2f", float64(n)/1e9)) + "G"
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
