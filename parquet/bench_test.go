package parquet

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkEncode encodes a batch of 10,000 NDJSON records of ~100 bytes,
// as testdata/bench-parquet.sh does, with zstd.
func BenchmarkEncode(b *testing.B) {
	var in strings.Builder
	levels := []string{"info", "warn", "error", "debug"}
	for i := range 10000 {
		fmt.Fprintf(&in, `{"seq":%d,"ts":"2024-05-%02dT%02d:%02d:%02d.%03dZ","level":"%s","user":"u%05d","ms":%d.%d,"ok":%t,"msg":"request %d handled"}`+"\n",
			i, 1+i%28, i%24, i%60, (i*7)%60, i%1000, levels[i%4], (i*7919)%100000, i%500, i%10, i%3 != 0, i%997)
	}
	batch := batchOf(b, in.String())
	s, err := ParseSchema([]byte(`[{"name":"seq","type":"int64","required":true},{"name":"ts","type":"timestamp","unit":"ms"},
		{"name":"level","type":"string"},{"name":"user","type":"string"},{"name":"ms","type":"double"},{"name":"ok","type":"boolean"},{"name":"msg","type":"string"}]`))
	if err != nil {
		b.Fatal(err)
	}
	e, _ := NewEncoder(Options{Schema: s})
	b.SetBytes(int64(batch.Size()))
	b.ReportAllocs()
	var size int
	for b.Loop() {
		data, rej, err := e.Encode(batch)
		if err != nil || rej != nil {
			b.Fatal(rej, err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "file-bytes")
}
