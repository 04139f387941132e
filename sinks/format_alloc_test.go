// The race detector makes sync.Pool drop items on purpose, and
// encoding/json pools its scanners, so allocations are counted without it,
// as the standard library does.

//go:build !race

package sinks

import "testing"

func TestFormatEncodeDoesNotAllocate(t *testing.T) {
	b := readInput(t, "records", '\n')
	good := make([]int, 0, b.Len())
	for i := range b.Len() {
		if checkJSON(b.Record(i)) == nil {
			good = append(good, i)
		}
	}
	b = b.Pick(good)
	for _, f := range []Format{Lines, NDJSON, JSON} {
		var buf []byte
		f.Body(&buf, b)
		if n := testing.AllocsPerRun(100, func() { f.Body(&buf, b) }); n != 0 {
			t.Errorf("%v: %v allocations per batch with a reused buffer", f, n)
		}
	}
}
