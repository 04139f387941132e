package batcher

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestKeyTemplate(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 11, 25, 7, 30, 0, 0, time.FixedZone("X", 3600)) }
	kafka := &Meta{Topic: "orders", Partition: 3, Key: []byte("k1")}
	for _, tc := range []struct {
		tmpl, rec string
		meta      *Meta
		want, err string
	}{
		{"{json:tenant}", `{"tenant":"acme","n":1}`, nil, "acme", ""},
		{"t={json:user.id}/{json:ok}", `{"user":{"id":42},"ok":true}`, nil, "t=42/true", ""},
		{"{json:tenant}", `{"n":1}`, nil, "", `no field "tenant"`},
		{"{json:a.b}", `{"a":"x"}`, nil, "", `"a" is not an object`},
		{"{json:a}", `{"a":null}`, nil, "", "null"},
		{"{json:a}", `{"a":[1]}`, nil, "", "object or array"},
		{"{json:a}", `not json`, nil, "", "not a JSON object"},
		{"{field:2}", "a\tb\tc", nil, "b", ""},
		{"{field:3}", "a\tb\tc", nil, "c", ""},
		{"{field:4}", "a\tb\tc", nil, "", "fewer columns"},
		{"{field:2}", "a\t\tc", nil, "", ""},
		{"{field:1}", "abc", nil, "abc", ""},
		{"{field:1}", "\tx", nil, "", ""},
		{"{field:1}", "1234567\tx", nil, "1234567", ""},
		{"{field:1}", "12345678\tx", nil, "12345678", ""},
		// Columns longer than indexShort's loop.
		{"{field:2}", strings.Repeat("a", 20) + "\t" + strings.Repeat("b", 30) + "\tc", nil, strings.Repeat("b", 30), ""},
		{"{field:1}", strings.Repeat("a", 40), nil, strings.Repeat("a", 40), ""},
		{"{field:2}", strings.Repeat("a", 40), nil, "", "fewer columns"},
		{"{topic}-{partition}-{kafka_key}", "x", kafka, "orders-3-k1", ""},
		{"{kafka_key}", "x", nil, "", "need Kafka records"},
		{"{date}T{hour}", "x", nil, "2026-11-25T06", ""},
	} {
		kt, err := ParseKeyTemplate(tc.tmpl, '\t')
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		kt.now = now
		got, err := kt.Key(nil, &Record{Data: []byte(tc.rec), Meta: tc.meta})
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s on %q: error %v, want %q", tc.tmpl, tc.rec, err, tc.err)
		case tc.err == "" && (err != nil || string(got) != tc.want):
			t.Errorf("%s on %q: %q, %v; want %q", tc.tmpl, tc.rec, got, err, tc.want)
		}
	}
	for _, bad := range []string{"{json:}", "{json:a..b}", "{field:0}", "{field:x}", "{nope}", "{json:a", ""} {
		if _, err := ParseKeyTemplate(bad, '\t'); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// BenchmarkKeyTemplate renders the key of a 100-byte record.
func BenchmarkKeyTemplate(b *testing.B) {
	for _, bc := range []struct{ tmpl, rec string }{
		{"{field:1}", "k3\t" + strings.Repeat("x", 96)},
		{"{field:3}", "a\tbb\tk3\t" + strings.Repeat("x", 91)},
		{"{json:tenant}", `{"ts":"2026-11-25T07:30:00Z","tenant":"acme","level":"info","msg":"` + strings.Repeat("x", 24) + `"}`},
		{"{json:user.id}/{date}", `{"ts":"2026-11-25T07:30:00Z","user":{"id":42,"name":"ann"},"msg":"` + strings.Repeat("x", 25) + `"}`},
	} {
		b.Run(bc.tmpl, func(b *testing.B) {
			kt, err := ParseKeyTemplate(bc.tmpl, '\t')
			if err != nil {
				b.Fatal(err)
			}
			r := &Record{Data: []byte(bc.rec)}
			var dst []byte
			b.ReportAllocs()
			for b.Loop() {
				if dst, err = kt.Key(dst[:0], r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// jsonFind must find what the parsing path finds, or leave the record to
// it.
func FuzzJSONFind(f *testing.F) {
	f.Add(`{"a":"x","b":{"c":1,"d":[1,{"e":"}"}]},"a":"y"}`, "a")
	f.Add(`{"a":"x","b":{"c":1,"d":[1,{"e":"}"}]}}`, "b.c")
	f.Add(` { "t" : "caf\u00e9" , "n" : -1.5e3 } `, "t")
	f.Add(`{"k":true,"s":"a\"b"}`, "s")
	f.Add(`{"ü":"x"}`, "ü")
	f.Fuzz(func(t *testing.T, data, dotted string) {
		path := strings.Split(dotted, ".")
		if slicesContainsEmpty(path) || !json.Valid([]byte(data)) {
			return
		}
		got, ok := jsonFind([]byte(data), path)
		if !ok {
			return
		}
		obj, err := jsonObject([]byte(data))
		if err != nil {
			t.Fatalf("found %q in %s, which is not an object: %v", got, data, err)
		}
		want, err := jsonPath(obj, path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s in %s: found %q, want %q, %v", dotted, data, got, want, err)
		}
	})
}
