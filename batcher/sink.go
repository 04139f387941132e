package batcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// A Sink delivers batches. Deliver may be called from several goroutines at
// once (one per --parallel worker) and must not keep b or its memory after
// it returns. b.Attempt counts the attempts at this batch.
//
// Errors are retried unless marked with Permanent. A sink that delivered all
// but some records returns a *RejectError naming them.
type Sink interface {
	Deliver(ctx context.Context, b *Batch) error
}

// A Closer is a Sink with work to finish once all deliveries are over.
type Closer interface {
	Close() error
}

// A Settler is a Sink that wants to know when no further attempt will be
// made at a batch, whether it was delivered, dead-lettered, abandoned or
// never attempted. Settled is called exactly once for every batch Seq.
type Settler interface {
	Settled(seq int64)
}

// An Abandoner is a Sink whose deliveries, once abandoned, may take a while
// to end: a command is given time between SIGTERM and SIGKILL. Run waits
// AbandonGrace for them (cause is why they were abandoned), then calls
// Kill, which must end at once whatever the sink started, and returns.
type Abandoner interface {
	AbandonGrace(cause error) time.Duration
	Kill()
}

// A DeadLetter keeps records that could not be delivered, so they can be
// replayed. Write must return only once the records are stored durably.
type DeadLetter interface {
	Write(ctx context.Context, b *Batch, reason error) error
}

// A RecordDeadLetter is a DeadLetter that can also keep one record read
// from r (one too large to be held in memory), followed by delim.
type RecordDeadLetter interface {
	WriteRecord(ctx context.Context, r io.Reader, delim byte) error
}

// Permanent marks err as one that retrying cannot fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct {
	err   error
	fatal bool
}

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Fatal marks err as one after which the sink can deliver nothing (its
// output is a closed pipe): the batch is neither retried nor dead-lettered,
// and the run stops as after any batch not delivered.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err, fatal: true}
}

// IsFatal reports whether err, or an error it wraps, was marked with Fatal.
func IsFatal(err error) bool {
	var p *permanentError
	return errors.As(err, &p) && p.fatal
}

// RetryAfter marks err as retryable no sooner than d from now (an HTTP
// Retry-After). The wait is still capped by the maximum backoff.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err, d}
}

type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// retryAfterHint returns the wait asked for by err, if any.
func retryAfterHint(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}

// A RejectError says that a sink delivered every record of the batch except
// the ones listed: records it will never accept (one that is not JSON, one
// too large for the endpoint), and records it could not deliver this time
// (Again: a part of a split batch met a 503). If any is Again and retries
// remain, the listed records are attempted again, on their own; what is
// still rejected then goes to the dead letter, or counts as undelivered.
type RejectError struct {
	Records []Rejected
}

// Rejected is one record a sink refused, by index in the batch it was given.
type Rejected struct {
	Index int
	Err   error
	Again bool // not delivered this time, but may be on another attempt
}

// again reports whether another attempt may deliver some of the records.
func (e *RejectError) again() bool {
	for _, r := range e.Records {
		if r.Again {
			return true
		}
	}
	return false
}

// indexes lists the rejected records' indexes.
func (e *RejectError) indexes() []int {
	idx := make([]int, len(e.Records))
	for i, r := range e.Records {
		idx[i] = r.Index
	}
	return idx
}

// maxReasons is how many rejected records' reasons an error lists: each
// has its own (a missing field, a string for a number), and a log line
// stays readable.
const maxReasons = 5

func (e *RejectError) Error() string {
	if len(e.Records) == 1 {
		return fmt.Sprintf("1 record rejected: %v", e.Records[0].Err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d records rejected: ", len(e.Records))
	for i, r := range e.Records[:min(len(e.Records), maxReasons)] {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprint(&b, r.Err)
	}
	if n := len(e.Records) - maxReasons; n > 0 {
		fmt.Fprintf(&b, "; and %d more", n)
	}
	return b.String()
}
