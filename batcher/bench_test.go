package batcher

import (
	"context"
	"testing"
)

// repeatSource sends the same chunk until n records have gone out.
type repeatSource struct {
	chunk []Record
	n     int
}

func (s *repeatSource) Run(ctx context.Context, out chan<- []Record) error {
	for s.n > 0 {
		c := s.chunk[:min(len(s.chunk), s.n)]
		select {
		case out <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.n -= len(c)
	}
	return nil
}

type discard struct{}

func (discard) Deliver(context.Context, *Batch) error { return nil }

// BenchmarkPipeline moves b.N records of 100 bytes through the aggregator
// and workers to a sink that discards them: one op is one record.
func BenchmarkPipeline(b *testing.B) {
	for _, bc := range []struct {
		name     string
		batch, j int
	}{{"n=1000/j=1", 1000, 1}, {"n=1000/j=4", 1000, 4}, {"n=10/j=1", 10, 1}} {
		b.Run(bc.name, func(b *testing.B) {
			chunk := make([]Record, 650) // about one 64 KiB pipe read of 100-byte lines
			line := make([]byte, 99)
			for i := range line {
				line[i] = 'x'
			}
			for i := range chunk {
				chunk[i].Data = line
			}
			b.SetBytes(100)
			b.ReportAllocs()
			p := &Pipeline{Source: &repeatSource{chunk: chunk, n: b.N}, Sink: discard{},
				Config: Config{MaxRecords: bc.batch, Parallel: bc.j, Delim: '\n', MaxBytes: 1 << 20}}
			b.ResetTimer()
			st, err := p.Run(context.Background())
			if err != nil || st.Delivered != int64(b.N) {
				b.Fatalf("err %v, stats %+v", err, st)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
