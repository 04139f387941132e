package sources

import (
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
		{"json value", []byte("k1"), []byte(`{"a": [1, 2],` + "\n" + `"b":"x"}`), false, false,
			`{"topic":"orders","partition":3,"offset":42,"timestamp":"2024-05-01T09:00:00.123Z","key":"k1",` +
				`"headers":[{"key":"trace","value":"abc"},{"key":"bin","value_base64":"/wA="}],"value":{"a":[1,2],"b":"x"}}`},
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
