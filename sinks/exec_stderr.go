// The exec sink's stderr: whole lines from parallel runs, the telling ones
// remembered for error messages.

package sinks

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
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
// never mix within a line, and remembers for error messages the first line
// that looks like an error, else the first and last lines: psql says
// ERROR: first and CONTEXT: last.
type lineWriter struct {
	w       io.Writer
	partial []byte
	first   []byte // first non-empty line, at most lastLineMax bytes
	errLine []byte // first line that looks like an error
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

// remember notes the first, the first error-looking and the last
// non-empty lines of text, which ends a line.
func (l *lineWriter) remember(text []byte) {
	for line := range bytes.SplitSeq(text, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if l.first == nil {
			l.first = bytes.Clone(line[:min(len(line), lastLineMax)])
		}
		if l.errLine == nil && errorLike(line) {
			l.errLine = bytes.Clone(line[:min(len(line), lastLineMax)])
		}
		if len(line) > lastLineMax {
			line = line[len(line)-lastLineMax:]
		}
		l.last = append(l.last[:0], line...)
	}
}

// errorWords start the line a command says what went wrong in: psql's
// "ERROR:", Go's "panic:", "fatal: ", "Error: ".
var errorWords = []string{"ERROR:", "FATAL:", "PANIC:", "Error:", "error:", "fatal:", "panic:"}

// errorLike reports whether line holds one of errorWords, as a word.
func errorLike(line []byte) bool {
	for _, w := range errorWords {
		i := bytes.Index(line, []byte(w))
		if i == 0 || i > 0 && !isLetter(line[i-1]) {
			return true
		}
	}
	return false
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

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

// lastLine is what stderr said, for an error message: its first line that
// looks like an error, else its first and last lines.
func (l *lineWriter) lastLine() string {
	switch {
	case l.errLine != nil:
		return "; stderr: " + printable(l.errLine)
	case l.first == nil:
		return ""
	case bytes.Equal(l.first, l.last):
		return "; stderr: " + printable(l.last)
	}
	return fmt.Sprintf("; stderr: %s (… last line: %s)", printable(l.first), printable(l.last))
}

// printable is line as it can be shown once within a message: quotes and
// backslashes as they are (C:\temp, "hits"), control bytes and invalid
// UTF-8 as \xNN, so a command's output cannot move the cursor or end the
// line.
func printable(line []byte) string {
	var b strings.Builder
	for len(line) > 0 {
		r, n := utf8.DecodeRune(line)
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x20, r == 0x7f, 0x80 <= r && r < 0xa0:
			for _, c := range line[:max(n, 1)] {
				fmt.Fprintf(&b, "\\x%02x", c)
			}
		default:
			b.Write(line[:n])
		}
		line = line[max(n, 1):]
	}
	return b.String()
}
