package kafka

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/batchpipe/batchpipe/batcher"
)

func TestEnvelope(t *testing.T) {
	ts := time.Date(2024, 5, 1, 10, 0, 0, 123e6, time.FixedZone("x", 3600))
	meta := &batcher.Meta{Topic: "orders", Partition: 3, Offset: 42, Timestamp: ts,
		Headers: []batcher.Header{{Key: "trace", Value: []byte("abc")}, {Key: "bin", Value: []byte{0xff, 0x00}}}}
	for _, tc := range []struct {
		name       string
		key, value []byte
		keyNull    bool
		valueNull  bool
		want       string
	}{
		{"json value", []byte("k1"), []byte(`{"a":[1,2],"b":"x"}`), false, false,
			`{"topic":"orders","partition":3,"offset":42,"timestamp":"2024-05-01T09:00:00.123Z","key":"k1",` +
				`"headers":[{"key":"trace","value":"abc"},{"key":"bin","value_base64":"/wA="}],"value":{"a":[1,2],"b":"x"}}`},
		// Compacting would change the bytes, and a JSON string would read
		// back as its contents: both are strings.
		{"pretty json value", []byte(`"k1"`), []byte(`{"a": [1, 2],` + "\n" + `"b":"x"}`), false, false,
			`{"topic":"orders","partition":3,"offset":42,"timestamp":"2024-05-01T09:00:00.123Z","key":"\"k1\"",` +
				`"headers":[{"key":"trace","value":"abc"},{"key":"bin","value_base64":"/wA="}],"value":"{\"a\": [1, 2],\n\"b\":\"x\"}"}`},
		{"text value", []byte(`7`), []byte("plain \"text\"\t\u2028\x01"), false, false,
			`{"topic":"orders","partition":3,"offset":42,"timestamp":"2024-05-01T09:00:00.123Z","key":7,` +
				`"headers":[{"key":"trace","value":"abc"},{"key":"bin","value_base64":"/wA="}],"value":"plain \"text\"\t\u2028\u0001"}`},
		{"binary value, null key", nil, []byte{0xde, 0xad, 0xbe, 0xef}, true, false,
			`{"topic":"orders","partition":3,"offset":42,"timestamp":"2024-05-01T09:00:00.123Z","key":null,` +
				`"headers":[{"key":"trace","value":"abc"},{"key":"bin","value_base64":"/wA="}],"value_base64":"3q2+7w=="}`},
		{"tombstone, empty key", []byte{}, nil, false, true,
			`{"topic":"orders","partition":3,"offset":42,"timestamp":"2024-05-01T09:00:00.123Z","key":"",` +
				`"headers":[{"key":"trace","value":"abc"},{"key":"bin","value_base64":"/wA="}],"value":null}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(appendEnvelope(nil, meta, tc.key, tc.value, tc.keyNull, tc.valueNull))
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid([]byte(got)) || strings.ContainsAny(got, "\n\r") {
				t.Fatalf("not one line of valid JSON: %s", got)
			}
		})
	}
}

// Every string survives a round trip through appendJSONString.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "\x00\x1f\x7f", "é\u2028\u2029😀", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		enc := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(enc, &back); err != nil || back != s {
			t.Fatalf("%q encoded as %s, decoded as %q (%v)", s, enc, back, err)
		}
	})
}

// Whatever a record holds, Parse gives back what Append was given.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range [][2]string{{"k", `{"a":1}`}, {"", ""}, {`"k"`, `{"a": 1}`}, {"\xff", "\x00\xfe"}, {"7", " 7"}, {"null", "[]"}, {`"`, "\u2028"}} {
		f.Add([]byte(s[0]), []byte(s[1]), false, false, "h", []byte("\xffv"))
	}
	f.Add([]byte(nil), []byte(nil), true, true, "", []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte, keyNull, valueNull bool, hkey string, hvalue []byte) {
		if !utf8.ValidString(hkey) {
			return
		}
		if keyNull {
			key = nil
		} else if key == nil {
			key = []byte{}
		}
		if valueNull {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		meta := &batcher.Meta{Topic: "t", Partition: 2, Offset: 9, Timestamp: time.UnixMilli(1714557600123),
			Headers: []batcher.Header{{Key: hkey, Value: hvalue}, {Key: hkey, Value: []byte("second")}}}
		line := appendEnvelope(nil, meta, key, value, keyNull, valueNull)
		if bytes.ContainsAny(line, "\n\r") {
			t.Fatalf("not one line: %s", line)
		}
		r, err := parseEnvelope(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if (r.Key == nil) != keyNull || !bytes.Equal(r.Key, key) || (r.Value == nil) != valueNull || !bytes.Equal(r.Value, value) {
			t.Fatalf("%s: key %q value %q, want %q %q", line, r.Key, r.Value, key, value)
		}
		if r.Partition != 2 || !r.Timestamp.Equal(meta.Timestamp) || len(r.Headers) != 2 ||
			r.Headers[0].Key != hkey || !bytes.Equal(r.Headers[0].Value, hvalue) || string(r.Headers[1].Value) != "second" {
			t.Fatalf("%s: %+v", line, r)
		}
	})
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`plain text`, "not an envelope"},
		{`{"key":"k"}`, `no "value"`},
		{`{"value":"v","value_base64":"dg=="}`, "both"},
		{`{"value_base64":"***"}`, "value_base64"},
		{`{"value":1,"partition":-2}`, "partition -2"},
		{`{"value":1,"timestamp":"yesterday"}`, "timestamp"},
		{`{"value":1,"headers":[{"value":"v"}]}`, "header 1 has no key"},
	} {
		if _, err := parseEnvelope([]byte(tc.line)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.line, err, tc.want)
		}
	}
}
