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
	"unicode/utf8"

	"github.com/batchpipe/batchpipe/batcher"
)

// Progress redraws one status line, at most ten times a second, until its
// context is done; then it erases the line so the summary can take its
// place. It is meant for a terminal only.
type Progress struct {
	W     io.Writer
	Stats func() batcher.Stats
	Lag   func() int64      // total consumer lag; nil when not reading Kafka
	Group func() GroupState // the consumer group member's state; nil without --group
	Color bool
	// Dumb is for a terminal without escape codes (TERM=dumb): the line
	// is erased by overwriting it with spaces.
	Dumb bool

	Interval time.Duration // default 100ms
	// RateWindow is how far back the rate looks; default 5s. A shorter
	// one shows 0/s between the bursts of a slow sink's backpressure.
	RateWindow time.Duration
	// Quiet is how long output through Through must pause before the
	// status line is drawn again (0: as soon as the line is complete):
	// data scrolling by is not interleaved with status lines, and a long
	// run that writes little still shows its progress.
	Quiet time.Duration

	mu      sync.Mutex // one writer of the terminal at a time
	shown   string     // the status line on the screen, "" if none
	last    string     // the latest status, redrawn after other output
	midLine bool       // other output left a partial line: no status until it ends
	dataAt  time.Time  // when output last went through Through
	stopped bool
}

// Log returns a writer for other output to the same terminal: each write
// first erases the status line, which is redrawn after it.
func (p *Progress) Log() io.Writer { return logWriter{p, p.W, false} }

// Through returns a writer for w, another stream showing on the same
// terminal (stdout, where commands' output goes): like Log, it erases the
// status line before each write, and redraws it once a line is complete
// and the output has paused for Quiet.
func (p *Progress) Through(w io.Writer) io.Writer { return logWriter{p, w, true} }

type logWriter struct {
	p    *Progress
	w    io.Writer
	data bool // through Through
}

func (w logWriter) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.erase(); err != nil {
		return 0, err
	}
	n, err := w.w.Write(b)
	if n > 0 {
		p.midLine = b[n-1] != '\n'
	}
	if w.data {
		p.dataAt = time.Now()
	}
	if err == nil && !p.midLine && !p.stopped && p.last != "" && p.quiet() {
		p.show(p.last)
	}
	return n, err
}

// erase clears the status line, if it is shown.
func (p *Progress) erase() error {
	if p.shown == "" {
		return nil
	}
	var err error
	if p.Dumb {
		_, err = io.WriteString(p.W, "\r"+strings.Repeat(" ", utf8.RuneCountInString(p.shown))+"\r")
	} else {
		_, err = io.WriteString(p.W, "\r\x1b[K")
	}
	p.shown = ""
	return err
}

// show draws s in place of the status line shown.
func (p *Progress) show(s string) {
	if p.Dumb {
		pad := utf8.RuneCountInString(p.shown) - utf8.RuneCountInString(s)
		io.WriteString(p.W, "\r"+s+strings.Repeat(" ", max(pad, 0)))
	} else {
		io.WriteString(p.W, "\r\x1b[K"+s)
	}
	p.shown = s
}

func (p *Progress) draw(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = s
	if !p.midLine && p.quiet() {
		// Over a partial line, the status would hide it: wait for its end.
		p.show(s)
	}
}

// quiet reports whether output through Through has paused for Quiet.
func (p *Progress) quiet() bool {
	return p.Quiet <= 0 || p.dataAt.IsZero() || time.Since(p.dataAt) >= p.Quiet
}

// stop erases the line for good.
func (p *Progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.erase()
}

// sample is the count read at a moment, for the rate.
type sample struct {
	at   time.Time
	read int64
}

// Run draws until ctx is done. It returns once the line is erased.
func (p *Progress) Run(ctx context.Context) {
	every := p.Interval
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	window := p.RateWindow
	if window <= 0 {
		window = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	// The rate is over the last window, not the last tick: reading comes in
	// bursts when the sink sets the pace, and a rate per tick would flicker
	// to 0/s between them.
	samples := []sample{{time.Now(), 0}}
	for {
		select {
		case <-ctx.Done():
			p.stop()
			return
		case now := <-tick.C:
			st := p.Stats()
			samples = append(samples, sample{now, st.Read})
			for len(samples) > 2 && now.Sub(samples[1].at) >= window {
				samples = samples[1:]
			}
			first := samples[0]
			rate := float64(st.Read-first.read) / now.Sub(first.at).Seconds()
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
	if p.Group != nil {
		b.WriteString(" · " + p.Group().short())
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
