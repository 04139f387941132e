// Package sources holds the stdin source: a delimited byte stream. The
// Kafka source lives in package kafka.
package sources

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/batchpipe/batchpipe/batcher"
)

// Stream reads records separated by a one-byte delimiter from a reader
// (stdin). Bytes pass through untouched: no line-length limit, no decoding,
// no CR stripping; a final record without a delimiter is still a record.
type Stream struct {
	R     io.Reader
	Delim byte

	// MaxRecordBytes is the longest record accepted; a longer one is
	// skipped and sent as a *batcher.TooLargeError. Default 64 MiB.
	MaxRecordBytes int
	// ReadSize is the size of each read. Default DefaultReadSize.
	ReadSize int
	// KeepTooLarge keeps the bytes of a record over MaxRecordBytes aside,
	// in an unlinked temporary file, for the dead letter
	// (batcher.TooLargeError.Body), rather than skip them.
	KeepTooLarge bool

	// Stopped, once closed, says that the end of Run's context is a stop
	// asked for (the first SIGTERM), not a failure: a record the stop cut
	// in half is then read to its end and sent, until Drain is done. Only
	// an R with a file descriptor (stdin) can be read that way.
	Stopped <-chan struct{}
	Drain   context.Context
}

var _ batcher.Source = (*Stream)(nil)

// DefaultReadSize is the size of a read: small enough that a read is
// framed and copied into batches while it is still in the CPU's cache the
// kernel wrote it through (three such buffers circulate), large enough that
// the system calls cost little. Reads of 1 MiB, past a core's cache, made
// runs to a file 8-13% slower, and with --partition-by 24% slower.
const DefaultReadSize = 256 << 10

// nbufs read buffers circulate: one being read into, one being framed and
// sent, one still referenced by the chunk the receiver is working on.
const nbufs = 3

// maxFramed bounds the records sent in one chunk: a read where records
// over a small limit alternate with short ones would otherwise make two
// Records for every few bytes.
const maxFramed = 4096

// cutReadBytes is how much of a record cut by a stop is read a byte at a
// time, so that no read takes bytes past its end; beyond it reads double.
const cutReadBytes = 4096

type readResult struct {
	buf []byte
	n   int
	err error
}

// Run reads until EOF or ctx is done. Reads happen on their own goroutine.
// From a file descriptor (stdin), a read starts only once the input is
// ready, so that when ctx is done no read is left waiting: every byte taken
// from the input is sent, and what was not taken stays for the next reader
// (`{ batchpipe …; cat; }`). Other readers' reads cannot be interrupted: a
// read blocked when ctx is done is left behind, and what it returns later
// is lost. When ctx is done, what was read goes out before Run returns; a
// record begun but not finished is read to its end after a stop (see
// Stopped), else sent with an error: bytes taken from the input are never
// dropped unsaid.
func (s *Stream) Run(ctx context.Context, out chan<- []batcher.Record) error {
	size := s.ReadSize
	if size <= 0 {
		size = DefaultReadSize
	}
	limit := s.MaxRecordBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	in, err := newWaker(s.R)
	if err != nil {
		return err
	}
	defer in.close()

	free := make(chan []byte, nbufs)
	for range nbufs {
		free <- make([]byte, size)
	}
	// Room for every buffer, so the reader never waits to hand one over.
	reads := make(chan readResult, nbufs)
	quit := make(chan struct{})
	go s.read(in, free, reads, quit)

	f := framer{delim: s.Delim, limit: limit, keep: s.KeepTooLarge}
	defer f.dropSpool()
	// held is the buffer behind the last chunk sent: the receiver may still
	// be copying from it until it accepts the next chunk.
	var held []byte
	send := func(buf []byte, eof bool) bool { return f.send(out, buf, eof) }
	done := ctx.Done()
	for {
		var r readResult
		var ok bool
		select {
		case r, ok = <-reads:
		case <-done:
			// Stop the reader; every read it made goes out. A reader
			// that cannot be woken may be blocked in a read: only what
			// it already returned is taken.
			close(quit)
			in.wake()
			done = nil
			if !in.canWait() {
				reads = drained(reads)
			}
			continue
		}
		if !ok {
			break // stopped
		}
		if send(r.buf[:r.n], r.err == io.EOF) {
			// The receiver took a chunk of this buffer, so it is done
			// with the one before.
			if held != nil {
				free <- held
			}
			held = r.buf
		} else {
			free <- r.buf // nothing refers to it: its bytes went to the carry
		}
		if r.err != nil {
			if r.err == io.EOF {
				return nil
			}
			// Records already framed were read and have been sent.
			return r.err
		}
	}
	if err := s.finishCut(in, &f, send, size); err != nil {
		return err
	}
	if rec, ok := f.cut(); ok {
		out <- []batcher.Record{rec}
	}
	return ctx.Err()
}

// read reads into the buffers free gives it, each once the input is ready,
// and hands them to reads, until EOF, an error or quit. It closes reads.
func (s *Stream) read(in *waker, free <-chan []byte, reads chan<- readResult, quit <-chan struct{}) {
	defer close(reads)
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-quit:
			return
		}
		if ready, err := in.wait(); !ready {
			if err != nil {
				reads <- readResult{buf, 0, err}
			}
			return
		}
		n, err := s.R.Read(buf)
		reads <- readResult{buf, n, err}
		if err != nil {
			return
		}
	}
}

// send frames and sends one read's bytes, buf, to out; it reports whether
// a chunk refers to buf. A buffer usually goes out in one chunk; one with
// many records over the limit in several, so that the record slices stay
// small whatever the input. The sends do not give up when ctx is done: the
// receiver takes every chunk until Run returns.
func (f *framer) send(out chan<- []batcher.Record, buf []byte, eof bool) (sentAny bool) {
	p := buf
	for {
		var recs []batcher.Record
		recs, p = f.frame(p)
		if len(p) == 0 && eof {
			recs = f.finish(recs)
		}
		if len(recs) > 0 {
			out <- recs
			f.sent()
			sentAny = true
		}
		if len(p) == 0 {
			return sentAny
		}
	}
}

// drained returns a closed channel holding what reads holds now.
func drained(reads chan readResult) chan readResult {
	c := make(chan readResult, nbufs)
	for {
		select {
		case r := <-reads:
			c <- r
		default:
			close(c)
			return c
		}
	}
}

// finishCut reads the rest of a record a stop cut in half, when the stop
// was asked for and Drain is not over. Reads are a byte at a time at first,
// then doubling: bytes past the record's end that one read takes are sent
// too, and the record they begin is read to its end a byte at a time.
func (s *Stream) finishCut(in *waker, f *framer, send func([]byte, bool) bool, size int) error {
	if s.Stopped == nil || s.Drain == nil || !in.canWait() || !f.unfinished() {
		return nil
	}
	select {
	case <-s.Stopped:
	default:
		return nil // a failure, not a stop
	}
	in.rearm()
	stop := context.AfterFunc(s.Drain, in.wake)
	defer stop()
	// Two buffers: a chunk sent from one may be read by the receiver until
	// it takes the next, sent from the other.
	bufs, cur := [2][]byte{make([]byte, size), make([]byte, size)}, 0
	n, took := 1, 0
	for f.unfinished() {
		ready, err := in.wait()
		if !ready {
			return err // abandoned: the caller sends the cut record
		}
		m, err := s.R.Read(bufs[cur][:n])
		took += m
		was := f.skip + int64(len(f.carry))
		if send(bufs[cur][:m], err == io.EOF) {
			cur ^= 1
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		switch {
		case f.skip+int64(len(f.carry)) < was+int64(m):
			// The record ended, and another may have begun.
			n, took = 1, 0
		case took >= cutReadBytes:
			n = min(2*n, size)
		}
	}
	return nil
}

// framer splits buffers into records. A record that spans reads is
// assembled in a carry buffer, which is handed to the chunk with it: at most
// one allocation per read, not per record.
type framer struct {
	delim byte
	limit int

	carry   []byte
	partial bool  // carry holds the start of a record
	skip    int64 // >0: bytes of an oversized record skipped so far
	recs    [2][]batcher.Record

	keep  bool     // keep oversized records' bytes in spool
	spool *os.File // the oversized record being read, if kept
}

// frame returns the records at the start of p, in a slice reused every
// other chunk, and the rest of p still to be framed. Whole records go out
// as blocks, as they were read: finding them is the aggregator's job. An
// unfinished record at the end goes to the carry.
func (f *framer) frame(p []byte) ([]batcher.Record, []byte) {
	recs := f.recs[0][:0]
	defer func() { f.recs[0] = recs }()
	// Only the first record can continue one begun in an earlier read.
	if f.skip > 0 || f.partial {
		i := bytes.IndexByte(p, f.delim)
		if i < 0 {
			f.extend(p)
			return recs, nil
		}
		f.extend(p[:i])
		if f.skip > 0 {
			recs = append(recs, f.tooLarge(0))
		} else {
			recs = append(recs, f.takeCarry())
		}
		p = p[i+1:]
	}
	last := bytes.LastIndexByte(p, f.delim)
	if last < 0 {
		if len(p) > 0 {
			f.extend(p)
		}
		return recs, nil
	}
	if last <= f.limit {
		// No record in it can be over the limit.
		recs = append(recs, batcher.Record{Data: p[: last+1 : last+1], Block: true})
	} else {
		// Records over the limit are cut out of the blocks; at most
		// maxFramed of each, so that a chunk stays small.
		start, next := 0, 0
		for next <= last && len(recs) < maxFramed-2 {
			i := bytes.IndexByte(p[next:], f.delim)
			if i > f.limit {
				if next > start {
					recs = append(recs, batcher.Record{Data: p[start:next:next], Block: true})
				}
				tl := &batcher.TooLargeError{Size: int64(i), Limit: int64(f.limit)}
				if f.keep {
					// Read before the chunk is accepted, while p is valid.
					tl.Body = io.NopCloser(bytes.NewReader(p[next : next+i]))
				}
				recs = append(recs, batcher.Record{Err: tl})
				start = next + i + 1
			}
			next += i + 1
		}
		if next > start {
			recs = append(recs, batcher.Record{Data: p[start:next:next], Block: true})
		}
		if next <= last {
			return recs, p[next:]
		}
	}
	if rest := p[last+1:]; len(rest) > 0 {
		f.extend(rest)
	}
	return recs, nil
}

// extend adds the start or middle of a record to the carry, or counts it as
// skipped once the record is known to be too large.
func (f *framer) extend(p []byte) {
	if f.skip > 0 {
		f.skip += int64(len(p))
		f.spill(p)
		return
	}
	if len(f.carry)+len(p) > f.limit {
		f.skip = int64(len(f.carry) + len(p))
		if f.keep {
			if sp, err := os.CreateTemp("", "batchpipe-record-*"); err == nil {
				os.Remove(sp.Name()) // gone with the descriptor, even after a crash
				f.spool = sp
			}
			f.spill(f.carry)
			f.spill(p)
		}
		f.carry = f.carry[:0]
		f.partial = false
		return
	}
	if n := len(f.carry) + len(p); n > cap(f.carry) {
		// Double, rather than append's gentle growth for large slices: a
		// 50 MB line would otherwise be copied over and over.
		grown := make([]byte, len(f.carry), max(2*cap(f.carry), n, 4096))
		copy(grown, f.carry)
		f.carry = grown
	}
	f.carry = append(f.carry, p...)
	f.partial = true
}

func (f *framer) tooLarge(more int64) batcher.Record {
	size := f.skip + more
	f.skip = 0
	tl := &batcher.TooLargeError{Size: size, Limit: int64(f.limit)}
	if f.spool != nil {
		if _, err := f.spool.Seek(0, io.SeekStart); err == nil {
			tl.Body = f.spool
		} else {
			f.spool.Close()
		}
		f.spool = nil
	}
	return batcher.Record{Err: tl}
}

// spill adds p to the oversized record kept aside; a failure to write
// it (a full disk) gives up keeping it: the record is then only counted.
func (f *framer) spill(p []byte) {
	if f.spool == nil || len(p) == 0 {
		return
	}
	if _, err := f.spool.Write(p); err != nil {
		f.dropSpool()
	}
}

func (f *framer) dropSpool() {
	if f.spool != nil {
		f.spool.Close()
		f.spool = nil
	}
}

// takeCarry returns the assembled record and leaves the carry empty.
func (f *framer) takeCarry() batcher.Record {
	r := batcher.Record{Data: f.carry}
	f.carry, f.partial = nil, false
	return r
}

// sent is called once a chunk has been accepted: the record slice it used
// may be reused after the next one.
func (f *framer) sent() {
	f.recs[0], f.recs[1] = f.recs[1], f.recs[0]
}

// unfinished reports whether a record has begun and not ended.
func (f *framer) unfinished() bool { return f.partial || f.skip > 0 }

// cut ends the input early: a record begun but not finished comes with an
// error, as it cannot be delivered whole.
func (f *framer) cut() (batcher.Record, bool) {
	switch {
	case f.skip > 0:
		f.dropSpool() // half a record has no place in a dead letter
		return f.tooLarge(0), true
	case f.partial:
		r := f.takeCarry()
		r.Err = fmt.Errorf("%w: its first %d bytes were read, the rest was not", batcher.ErrCutShort, len(r.Data))
		return r, true
	}
	return batcher.Record{}, false
}

// finish adds the last record, which had no delimiter.
func (f *framer) finish(recs []batcher.Record) []batcher.Record {
	switch {
	case f.skip > 0:
		recs = append(recs, f.tooLarge(0))
	case f.partial:
		recs = append(recs, f.takeCarry())
	}
	f.recs[0] = recs
	return recs
}
