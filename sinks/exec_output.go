// The exec sink's output: each run's stdout held whole, then written in
// batch order (--keep-order) or as runs finish.

package sinks

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/batchpipe/batchpipe/batcher"
)

// emit writes one run's held output to stdout in one piece and frees it.
// After a failure nothing more is written: a write cut short may have left
// part of an output, and a closed pipe or full disk stays so. The error is
// permanent, as retrying the command cannot mend stdout.
func (s *Exec) emit(h *heldOutput) error {
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	defer h.Close()
	if h.empty() {
		return nil // nothing to lose
	}
	if s.emitErr == nil {
		if _, err := h.WriteTo(s.outw); err != nil {
			s.emitErr = err
		}
	}
	if s.emitErr != nil {
		return outputLost(s.name, s.emitErr)
	}
	return nil
}

// errOutput marks a run whose output could not be written.
var errOutput = errors.New("output not written")

// outputLost is the error of a batch whose output could not be written: a
// broken pipe ends the run (like cat, batchpipe stops writing to a reader
// that left), other failures (a full disk) fail the batch without retries,
// as running the command again cannot mend stdout.
func outputLost(name string, err error) error {
	err = fmt.Errorf("exec sink: %w of %s: %w", errOutput, name, err)
	if errors.Is(err, syscall.EPIPE) {
		return batcher.Fatal(err)
	}
	return batcher.Permanent(err)
}

// outWriter passes a run's output on, keeping the first write error.
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil && o.err == nil {
		o.err = err
	}
	return n, err
}

// hold keeps an output until its batch's turn (s.order), or fails its
// batch if stdout already failed, since it would not be written.
func (s *Exec) hold(seq int64, h *heldOutput) error {
	s.emitMu.Lock()
	err := s.emitErr
	s.emitMu.Unlock()
	if err != nil && !h.empty() {
		h.Close()
		return outputLost(s.name, err)
	}
	s.order.hold(seq, func() { s.emitSettled(seq, h) })
	return nil
}

// emitSettled writes an output held until its batch's turn. Its batch is
// settled by then, so a failure can only be counted for Close.
func (s *Exec) emitSettled(seq int64, h *heldOutput) {
	if s.emit(h) == nil {
		return
	}
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	if s.lost == 0 {
		s.lostSeq = seq
	}
	s.lost++
}

// heldOutputMemory is how much of one run's stdout is held in memory when
// runs are parallel; the rest goes to a temporary file.
const heldOutputMemory = 256 << 10

// heldOutput holds one run's stdout until it can be written whole: the
// first heldOutputMemory bytes in memory, the rest in an unlinked
// temporary file, so memory stays bounded whatever a command prints.
type heldOutput struct {
	mem  []byte
	file *os.File
}

func (h *heldOutput) Write(p []byte) (int, error) {
	if h.file == nil && len(h.mem)+len(p) <= heldOutputMemory {
		h.mem = append(h.mem, p...)
		return len(p), nil
	}
	if h.file == nil {
		f, err := os.CreateTemp("", "batchpipe-output-*")
		if err != nil {
			return 0, fmt.Errorf("hold output: %w", err)
		}
		os.Remove(f.Name()) // gone with the last descriptor, even after a crash
		h.file = f
	}
	n, err := h.file.Write(p)
	if err != nil {
		err = fmt.Errorf("hold output: %w", err)
	}
	return n, err
}

// WriteTo writes everything held to w.
func (h *heldOutput) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(h.mem)
	total := int64(n)
	if err != nil || h.file == nil {
		return total, err
	}
	if _, err := h.file.Seek(0, io.SeekStart); err != nil {
		return total, err
	}
	m, err := io.Copy(w, h.file)
	return total + m, err
}

func (h *heldOutput) empty() bool { return len(h.mem) == 0 && h.file == nil }

// Close frees what h holds.
func (h *heldOutput) Close() {
	h.mem = nil
	if h.file != nil {
		h.file.Close()
		h.file = nil
	}
}
