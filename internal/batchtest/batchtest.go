// Package batchtest makes batches for the tests of sinks: the way the
// pipeline does, since batches can only be built by it.
package batchtest

import (
	"context"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
)

// Source sends its records in one chunk.
type Source []batcher.Record

func (s Source) Run(ctx context.Context, out chan<- []batcher.Record) error {
	select {
	case out <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Records makes records of data, without metadata.
func Records(data ...[]byte) Source {
	recs := make(Source, len(data))
	for i, d := range data {
		recs[i].Data = d
	}
	return recs
}

// SinkFunc is a Sink made of a function.
type SinkFunc func(ctx context.Context, b *batcher.Batch) error

func (f SinkFunc) Deliver(ctx context.Context, b *batcher.Batch) error { return f(ctx, b) }

// Of makes one batch of records, numbered 1.
func Of(t testing.TB, delim byte, records ...[]byte) *batcher.Batch {
	t.Helper()
	return OfRecords(t, delim, Records(records...))
}

// OfRecords makes one batch of recs, metadata included, numbered 1.
func OfRecords(t testing.TB, delim byte, recs Source) *batcher.Batch {
	t.Helper()
	var got *batcher.Batch
	p := &batcher.Pipeline{
		Source: recs,
		Sink: SinkFunc(func(_ context.Context, b *batcher.Batch) error {
			idx := make([]int, b.Len())
			for i := range idx {
				idx[i] = i
			}
			got = b.Pick(idx) // a copy that outlives the delivery
			return nil
		}),
		Config: batcher.Config{MaxRecords: len(recs), MaxBytes: 1 << 30, Delim: delim},
	}
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Len() != len(recs) {
		t.Fatalf("pipeline made no batch of %d records", len(recs))
	}
	return got
}

// Lines returns s as records, for Of.
func Lines(s ...string) [][]byte {
	r := make([][]byte, len(s))
	for i, x := range s {
		r[i] = []byte(x)
	}
	return r
}
