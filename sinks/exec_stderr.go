// The exec sink's stderr: whole lines from parallel runs, the last one
// remembered for error messages.

package sinks

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// lockedWriter makes each Write whole with respect to other runs'.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// maxStderrLine bounds the partial line a run's stderr writer holds: a
// longer line is passed on in pieces.
const maxStderrLine = 64 << 10

// lineWriter passes a run's stderr on in whole lines, so that parallel runs
// never mix within a line, and remembers its last line for error messages.
type lineWriter struct {
	w       io.Writer
	partial []byte
	last    []byte // last non-empty line, at most lastLineMax bytes
}

const lastLineMax = 200

func (l *lineWriter) Write(p []byte) (int, error) {
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 {
		l.partial = append(l.partial, p...)
		if len(l.partial) >= maxStderrLine {
			l.remember(l.partial)
			l.w.Write(l.partial)
			l.partial = l.partial[:0]
		}
		return len(p), nil
	}
	lines := p[:i+1]
	if len(l.partial) > 0 {
		l.partial = append(l.partial, lines...)
		lines = l.partial
	}
	l.remember(lines[:len(lines)-1])
	// A failing stderr must not fail the run: the data went elsewhere.
	l.w.Write(lines)
	l.partial = append(l.partial[:0], p[i+1:]...)
	return len(p), nil
}

// remember keeps the last non-empty line of text that ends a line.
func (l *lineWriter) remember(text []byte) {
	for len(text) > 0 {
		j := bytes.LastIndexByte(text, '\n')
		line := bytes.TrimSpace(text[j+1:])
		if len(line) > 0 {
			if len(line) > lastLineMax {
				line = line[len(line)-lastLineMax:]
			}
			l.last = append(l.last[:0], line...)
			return
		}
		if j < 0 {
			return
		}
		text = text[:j]
	}
}

// finish passes on an unterminated last line, ending it so that the next
// run's output starts on a line of its own.
func (l *lineWriter) finish() {
	if len(l.partial) == 0 {
		return
	}
	l.remember(l.partial)
	l.w.Write(append(l.partial, '\n'))
	l.partial = nil
}

// lastLine is the last line of stderr, for an error message.
func (l *lineWriter) lastLine() string {
	if len(l.last) == 0 {
		return ""
	}
	return fmt.Sprintf("; stderr: %q", l.last)
}
