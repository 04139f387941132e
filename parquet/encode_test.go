package parquet

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
	pq "github.com/parquet-go/parquet-go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

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

type sinkFunc func(ctx context.Context, b *batcher.Batch) error

func (f sinkFunc) Deliver(ctx context.Context, b *batcher.Batch) error { return f(ctx, b) }

// batchOf makes a batch of the lines of s the way the pipeline does.
func batchOf(t testing.TB, s string) *batcher.Batch {
	t.Helper()
	var records [][]byte
	for l := range strings.Lines(s) {
		records = append(records, []byte(strings.TrimSuffix(l, "\n")))
	}
	var got *batcher.Batch
	p := &batcher.Pipeline{
		Source: recordSource(records),
		Sink: sinkFunc(func(_ context.Context, b *batcher.Batch) error {
			idx := make([]int, b.Len())
			for i := range idx {
				idx[i] = i
			}
			got = b.Pick(idx)
			return nil
		}),
		Config: batcher.Config{MaxRecords: len(records), MaxBytes: 1 << 30, Delim: '\n'},
	}
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return got
}

const testSchema = `[
  {"name": "seq", "type": "int64", "required": true},
  {"name": "msg", "type": "string"},
  {"name": "ok", "type": "boolean"},
  {"name": "score", "type": "double"},
  {"name": "small", "type": "int32"},
  {"name": "f", "type": "float"},
  {"name": "blob", "type": "bytes"},
  {"name": "at", "type": "timestamp", "unit": "ms"},
  {"name": "day", "type": "date"},
  {"name": "price", "type": "decimal", "precision": 10, "scale": 2},
  {"name": "user", "type": "string", "path": "user.name"},
  {"name": "tags", "type": "list", "items": {"type": "string"}},
  {"name": "geo", "type": "struct", "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": "double", "path": "lng"}]},
  {"name": "points", "type": "list", "items": {"type": "struct", "fields": [{"name": "x", "type": "int64"}]}}
]`

const testInput = `{"seq":1,"msg":"héllo ✓","ok":true,"score":1.5,"small":7,"f":0.25,"blob":"AAE=","at":"2024-05-06T07:08:09.123+02:00","day":"2024-05-06","price":"12.30","user":{"name":"ann"},"tags":["a","b"],"geo":{"lat":1,"lng":2},"points":[{"x":1},{"x":2}]}
{"seq":2}
{"seq":3,"tags":[],"points":[{}],"at":1700000000.5,"price":-0.01}
`

func TestEncodeRoundTrip(t *testing.T) {
	s, err := ParseSchema([]byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEncoder(Options{Schema: s})
	if err != nil {
		t.Fatal(err)
	}
	b := batchOf(t, testInput)
	data, rej, err := e.Encode(b)
	if err != nil || len(rej) > 0 {
		t.Fatalf("Encode: %v %v", rej, err)
	}
	f, err := pq.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.NumRows() != 3 {
		t.Fatalf("rows = %d, want 3", f.NumRows())
	}
	var names []string
	for _, c := range f.Schema().Fields() {
		names = append(names, c.Name())
	}
	if got := strings.Join(names, ","); got != "seq,msg,ok,score,small,f,blob,at,day,price,user,tags,geo,points" {
		t.Errorf("columns in the order %s, not as declared", got)
	}
	again, _, _ := e.Encode(b)
	if !bytes.Equal(data, again) {
		t.Error("the same batch gave different bytes")
	}
}

func TestEncodeRejects(t *testing.T) {
	s, err := ParseSchema([]byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := NewEncoder(Options{Schema: s})
	for _, tc := range []struct{ rec, want string }{
		{`not json`, "not valid JSON"},
		{`{"msg":"x"}`, "required field seq is missing"},
		{`{"seq":null}`, "required field seq is null"},
		{`{"seq":"1"}`, `field seq is the string "1", not an int64`},
		{`{"seq":1.5}`, "1.5 is not an int64"},
		{`{"seq":1,"small":3000000000}`, "not an int32"},
		{`{"seq":1,"price":1.234}`, "more than 2 digits after the point"},
		{`{"seq":1,"price":123456789012}`, "more than 10 digits"},
		{`{"seq":1,"at":"yesterday"}`, "not an RFC 3339 time"},
		{`{"seq":1,"at":"2024-01-01T00:00:00.0001Z"}`, "finer than the column's unit"},
		{`{"seq":1,"day":"2024-13-01"}`, "not a date"},
		{`{"seq":1,"blob":"!!"}`, "not base64"},
		{`{"seq":1,"tags":"a"}`, "not an array"},
		{`{"seq":1,"tags":[1]}`, "item is the number 1, not a string"},
		{`{"seq":1,"geo":[]}`, "not an object"},
		{`[1]`, "not a JSON object"},
		{"{\"seq\":1,\"msg\":\"\xff\"}", "invalid UTF-8"},
		{`{"seq":1} {}`, "text after the value"},
	} {
		b := batchOf(t, `{"seq":0}`+"\n"+tc.rec+"\n")
		data, rej, err := e.Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(rej) != 1 || rej[0].Index != 1 || !strings.Contains(rej[0].Err.Error(), tc.want) {
			t.Errorf("%s: rejected %v, want record 1: %q", tc.rec, rej, tc.want)
		}
		if data == nil {
			t.Errorf("%s: the good record was not written", tc.rec)
		}
	}
}

func TestUnscaled(t *testing.T) {
	for _, tc := range []struct {
		s    string
		p, c int
		want int64
		ok   bool
	}{
		{"12.30", 10, 2, 1230, true},
		{"-0.01", 10, 2, -1, true},
		{"1e2", 5, 2, 10000, true},
		{"1.5e-1", 5, 2, 15, true},
		{"1.001", 5, 2, 0, false},
		{"100000", 5, 0, 0, false},
		{"1.", 5, 0, 1, true},
		{"abc", 5, 0, 0, false},
		{"99999999999999999999", 19, 0, 0, false},
	} {
		got, err := unscaled(tc.s, tc.p, tc.c)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("unscaled(%q, %d, %d) = %d, %v", tc.s, tc.p, tc.c, got, err)
		}
	}
}

func TestInfer(t *testing.T) {
	b := batchOf(t, `{"b":1,"a":"x","n":null,"l":[1,2.5],"o":{"z":true,"y":"s"}}
{"b":2.5,"c":"only here","a":3}
`)
	s := Infer(b)
	want := `[
  {"name":"b","type":"double"},
  {"name":"a","type":"string"},
  {"name":"n","type":"string"},
  {"name":"l","type":"list","items":{"type":"double"}},
  {"name":"o","type":"struct","fields":[{"name":"y","type":"string"},{"name":"z","type":"boolean"}]},
  {"name":"c","type":"string"}
]
`
	if got := string(s.JSON()); got != want {
		t.Errorf("inferred\n%s\nwant\n%s", got, want)
	}
	if _, err := ParseSchema(s.JSON()); err != nil {
		t.Errorf("the inferred schema does not parse: %v", err)
	}
}

// TestEncodeEscapedStringsAcrossChunks checks the values of unescaped
// strings, whose text the parser reuses once a chunk of rows is written.
func TestEncodeEscapedStringsAcrossChunks(t *testing.T) {
	var in strings.Builder
	for i := range 3 * chunk {
		fmt.Fprintf(&in, `{"s":"\u00e9%d\n","k":"k%d"}`+"\n", i, i%7)
	}
	s, _ := ParseSchema([]byte(`[{"name":"s","type":"string"},{"name":"k","type":"string"}]`))
	e, _ := NewEncoder(Options{Schema: s})
	data, rej, err := e.Encode(batchOf(t, in.String()))
	if err != nil || rej != nil {
		t.Fatal(rej, err)
	}
	type row struct {
		S string `parquet:"s,optional"`
		K string `parquet:"k,optional"`
	}
	rows, err := pq.Read[row](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3*chunk {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows {
		if want := fmt.Sprintf("é%d\n", i); r.S != want || r.K != fmt.Sprintf("k%d", i%7) {
			t.Fatalf("row %d = %q, want s %q", i, r, want)
		}
	}
}
