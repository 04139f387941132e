package batcher

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// repeatSource sends the same chunk until n records have gone out; per,
// if set, is the records in a chunk of one block of equal records.
type repeatSource struct {
	chunk []Record
	n     int
	per   int
}

func (s *repeatSource) Run(ctx context.Context, out chan<- []Record) error {
	for s.n > 0 {
		c, per := s.chunk, s.per
		switch {
		case per == 0:
			c = c[:min(len(c), s.n)]
			per = len(c)
		case s.n < per:
			last := c[0]
			last.Data = last.Data[:len(last.Data)/per*s.n]
			c, per = []Record{last}, s.n
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.n -= per
	}
	return nil
}

type discard struct{}

func (discard) Deliver(context.Context, *Batch) error { return nil }

// BenchmarkPipeline moves b.N records of 100 bytes through the aggregator
// and workers to a sink that discards them: one op is one record. Records
// come one by one (as from Kafka) or in blocks (as from a stream).
func BenchmarkPipeline(b *testing.B) {
	for _, bc := range []struct {
		name     string
		batch, j int
		block    bool
		keys     int // with Key, records spread over this many keys
	}{
		{"records/n=1000/j=1", 1000, 1, false, 0}, {"records/n=1000/j=4", 1000, 4, false, 0}, {"records/n=10/j=1", 10, 1, false, 0},
		{"blocks/n=1000/j=1", 1000, 1, true, 0}, {"blocks/n=10/j=1", 10, 1, true, 0},
		{"records/keys=10/n=1000/j=1", 1000, 1, false, 10}, {"records/keys=1/n=1000/j=1", 1000, 1, false, 1},
		{"blocks/keys=10/n=1000/j=1", 1000, 1, true, 10}, {"blocks/keys=10/n=1000/j=4", 1000, 4, true, 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			line := append(bytes.Repeat([]byte{'x'}, 99), '\n')
			// About one 64 KiB pipe read of 100-byte lines.
			chunk := make([]Record, 650)
			for i := range chunk {
				chunk[i].Data = line[:99]
				if bc.keys > 0 {
					// "k3:xxx…": prefixKey finds the key before the ':'.
					chunk[i].Data = fmt.Appendf(nil, "k%d:%s", i%bc.keys, line[:99-3])
				}
			}
			src := &repeatSource{chunk: chunk, n: b.N}
			if bc.block {
				var block []byte
				for i := range 650 {
					if bc.keys > 0 {
						block = fmt.Appendf(block, "k%d\t%s\n", i%bc.keys, line[:99-3])
					} else {
						block = append(block, line...)
					}
				}
				src = &repeatSource{chunk: []Record{{Data: block, Block: true}}, n: b.N, per: 650}
			}
			b.SetBytes(100)
			b.ReportAllocs()
			p := &Pipeline{Source: src, Sink: discard{},
				Config: Config{MaxRecords: bc.batch, Parallel: bc.j, Delim: '\n', MaxBytes: 1 << 20}}
			if bc.keys > 0 {
				p.Key = prefixKey
				if bc.block {
					kt, err := ParseKeyTemplate("{field:1}", '\t') // as --partition-by '{field:1}'
					if err != nil {
						b.Fatal(err)
					}
					p.Key = kt.Key
				}
			}
			b.ResetTimer()
			st, err := p.Run(context.Background())
			if err != nil || st.Delivered != int64(b.N) {
				b.Fatalf("err %v, stats %+v", err, st)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
