package sinks

import (
	"context"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
)

// recordSource sends its records in one chunk.
type recordSource [][]byte

func (s recordSource) Run(ctx context.Context, out chan<- []batcher.Record) error {
	recs := make([]batcher.Record, len(s))
	for i, d := range s {
		recs[i].Data = d
	}
	select {
	case out <- recs:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sinkFunc is a Sink made of a function.
type sinkFunc func(ctx context.Context, b *batcher.Batch) error

func (f sinkFunc) Deliver(ctx context.Context, b *batcher.Batch) error { return f(ctx, b) }

// batchOf makes a batch of records, numbered from 1, the way the pipeline
// does: batches can only be built by it.
func batchOf(t testing.TB, delim byte, records ...[]byte) *batcher.Batch {
	t.Helper()
	var got *batcher.Batch
	p := &batcher.Pipeline{
		Source: recordSource(records),
		Sink: sinkFunc(func(_ context.Context, b *batcher.Batch) error {
			idx := make([]int, b.Len())
			for i := range idx {
				idx[i] = i
			}
			got = b.Pick(idx) // a copy that outlives the delivery
			return nil
		}),
		Config: batcher.Config{MaxRecords: len(records), MaxBytes: 1 << 30, Delim: delim},
	}
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Len() != len(records) {
		t.Fatalf("pipeline made no batch of %d records", len(records))
	}
	return got
}

// lines splits s into records, for batchOf.
func lines(s ...string) [][]byte {
	r := make([][]byte, len(s))
	for i, x := range s {
		r[i] = []byte(x)
	}
	return r
}
