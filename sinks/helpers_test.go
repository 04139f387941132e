package sinks

import (
	"context"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/batchtest"
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
	return batchtest.Of(t, delim, records...)
}

// lines splits s into records, for batchOf.
func lines(s ...string) [][]byte {
	r := make([][]byte, len(s))
	for i, x := range s {
		r[i] = []byte(x)
	}
	return r
}
