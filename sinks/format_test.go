package sinks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/batchpipe/batchpipe/batcher"
)

// formatInputs are testdata/NAME.input files and their delimiters.
var formatInputs = []struct {
	name  string
	delim byte
}{
	{"records", '\n'}, // one per line, some not JSON
	{"pretty", 0},     // pretty-printed JSON, NUL-separated (-0)
}

// readInput returns the batch in testdata/name.input.
func readInput(t testing.TB, name string, delim byte) *batcher.Batch {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".input"))
	if err != nil {
		t.Fatal(err)
	}
	recs := bytes.Split(bytes.TrimSuffix(data, []byte{delim}), []byte{delim})
	b := batchOf(t, delim, recs...)
	if !bytes.Equal(b.Bytes(), data) {
		t.Fatalf("batch of %s.input does not hold the file as read", name)
	}
	return b
}

// rejectedText lists rejected records one per line, for golden files.
func rejectedText(rej []batcher.Rejected) []byte {
	var s strings.Builder
	for _, r := range rej {
		fmt.Fprintf(&s, "%d: %v\n", r.Index, r.Err)
	}
	return []byte(s.String())
}

func TestFormatGolden(t *testing.T) {
	for _, in := range formatInputs {
		for f := range numFormats {
			t.Run(in.name+"/"+f.String(), func(t *testing.T) {
				b := readInput(t, in.name, in.delim)
				body, rej := f.Encode([]byte("prefix:"), b)
				if !bytes.HasPrefix(body, []byte("prefix:")) {
					t.Fatalf("Encode did not append to dst: %q", body)
				}
				body = body[len("prefix:"):]
				golden(t, in.name+"."+f.String()+".golden", body)
				golden(t, in.name+"."+f.String()+".rejected.golden", rejectedText(rej))
				checkFormat(t, f, b, body, rej)
			})
		}
	}
}

// checkFormat checks what golden files cannot say for themselves.
func checkFormat(t *testing.T, f Format, b *batcher.Batch, body []byte, rej []batcher.Rejected) {
	t.Helper()
	ok := b.Len() - len(rej)
	switch f {
	case Lines:
		if !bytes.Equal(body, b.Bytes()) || len(rej) > 0 {
			t.Errorf("lines changed the records or rejected %d", len(rej))
		}
	case NDJSON:
		ls := bytes.SplitAfter(body, []byte("\n"))
		ls = ls[:len(ls)-1] // after the last '\n'
		if len(ls) != ok {
			t.Errorf("ndjson has %d lines for %d good records", len(ls), ok)
		}
		for _, l := range ls {
			if !json.Valid(l) && string(l) != "\n" { // blank records stay empty lines
				t.Errorf("ndjson line is not JSON: %q", l)
			}
		}
	case JSON:
		var arr []json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil || len(arr) != ok {
			t.Errorf("json body is not an array of %d values (%d, %v)", ok, len(arr), err)
		}
	}
	for _, r := range rej {
		if pos := b.Pos(r.Index).String(); !strings.Contains(r.Err.Error(), pos) {
			t.Errorf("rejection of record %d does not say where it is (%s): %v", r.Index, pos, r.Err)
		}
	}
}

func TestFormatAllRejected(t *testing.T) {
	b := batchOf(t, '\n', lines("nope", "{")...)
	for _, f := range []Format{NDJSON, JSON} {
		body, rej := f.Encode(nil, b)
		if len(body) != 0 || len(rej) != 2 {
			t.Errorf("%v: body %q, %d rejected; want nothing, 2", f, body, len(rej))
		}
	}
}

func TestFormatBodyLinesIsNotCopied(t *testing.T) {
	b := batchOf(t, '\n', lines("a", "b")...)
	var buf []byte
	body, _ := Lines.Body(&buf, b)
	if &body[0] != &b.Bytes()[0] || buf != nil {
		t.Error("the lines body is a copy")
	}
}

func TestParseFormat(t *testing.T) {
	for f := range numFormats {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := ParseFormat("csv"); err == nil || !strings.Contains(err.Error(), "lines, ndjson, json") {
		t.Errorf("ParseFormat(csv): %v; want an error listing the formats", err)
	}
	var f Format
	if err := f.Set("json"); err != nil || f != JSON || f.Type() != "format" {
		t.Errorf("Set(json): %v, %v", f, err)
	}
}

func BenchmarkFormat(b *testing.B) {
	recs := make([][]byte, 1000)
	for i := range recs {
		recs[i] = fmt.Appendf(nil, `{"ts":"2024-05-01T12:00:00Z","level":"info","msg":"request served","n":%d}`, i)
	}
	batch := batchOf(b, '\n', recs...)
	for _, f := range []Format{NDJSON, JSON} {
		b.Run(f.String(), func(b *testing.B) {
			var buf []byte
			b.SetBytes(int64(batch.Size()))
			for b.Loop() {
				f.Body(&buf, batch)
			}
			b.ReportMetric(float64(b.N)*float64(batch.Len())/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// FuzzFormat checks that encoding never panics, that every record is
// either in the body or rejected, and that ndjson and json bodies are
// valid JSON whose values are the accepted records' (ndjson keeps blank
// lines as they are).
func FuzzFormat(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n[1,2]\n\"x\"\n"), byte('\n'))
	f.Add([]byte("nope\n{\n\"b\"\n}\n\xff\n"), byte('\n'))
	f.Add([]byte("1\x002\x00{\"c\":\n3}\x00"), byte(0))
	f.Add([]byte("\n{}\n \r\n\xef\xbb\xbf[1]\n"), byte('\n')) // blank lines, a byte order mark
	f.Fuzz(func(t *testing.T, in []byte, delim byte) {
		recs := bytes.Split(bytes.TrimSuffix(in, []byte{delim}), []byte{delim})
		if len(recs) == 0 || len(recs) > 200 {
			return
		}
		b := batchOf(t, delim, recs...)
		for _, format := range []Format{NDJSON, JSON} {
			body, rej := format.Encode(nil, b)
			bad := map[int]bool{}
			for _, r := range rej {
				if bad[r.Index] || r.Index < 0 || r.Index >= b.Len() || r.Err == nil {
					t.Fatalf("%v: bad rejection %+v", format, r)
				}
				bad[r.Index] = true
			}
			var accepted [][]byte
			for i := range b.Len() {
				r := bytes.TrimPrefix(b.Record(i), bom)       // a byte order mark is no part of the value
				valid := json.Valid(r) && utf8.Valid(r)       // JSON text is UTF-8 (RFC 8259)
				kept := valid || format == NDJSON && blank(r) // a blank line, which readers skip
				if kept == bad[i] {
					t.Fatalf("%v: record %q valid=%v rejected=%v", format, b.Record(i), valid, bad[i])
				}
				if valid {
					accepted = append(accepted, r)
				}
			}
			var values []json.RawMessage
			if format == JSON {
				if len(accepted) > 0 && json.Unmarshal(body, &values) != nil {
					t.Fatalf("json body is not a JSON array: %q", body)
				}
			} else {
				for line := range bytes.Lines(body) {
					if blank(line) {
						continue
					}
					if !json.Valid(line) || bytes.Count(line, []byte("\n")) != 1 {
						t.Fatalf("ndjson line %q", line)
					}
					values = append(values, line)
				}
			}
			if len(values) != len(accepted) {
				t.Fatalf("%v: %d values for %d accepted records", format, len(values), len(accepted))
			}
			for i, v := range values {
				var x, y any
				json.Unmarshal(v, &x)
				json.Unmarshal(accepted[i], &y)
				if !reflect.DeepEqual(x, y) {
					t.Fatalf("%v: value %q is not record %q", format, v, accepted[i])
				}
			}
		}
	})
}
