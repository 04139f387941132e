package parquet

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that the parser accepts what encoding/json accepts as
// valid UTF-8 JSON, bar lone surrogates in escapes, and nothing else.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"a":1}`, `{"a":[1,2,{"b":null}]}`, ` {"a" : "x\"y\\u00e9\ud83c\udf89" } `,
		`01`, `1.`, `.5`, `-`, `1e`, `1e+5`, `-0.0e-0`, `"\x01"`, `"\ud83c"`, `{"a":1,}`, `[1,]`, `{"a"}`,
		`tru`, `true false`, `"abc`, `{"a":1}x`, "\"\t\"", `"\q"`, `nul`, `[`, `{`, `{"a":`, `"\u12"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p jparser
		_, err := p.parse(data)
		want := json.Valid(data) && utf8.Valid(data)
		if err == nil && !want {
			t.Fatalf("parse accepted %q, which is not valid JSON", data)
		}
		if err != nil && want && !lonesurrogate(err) {
			t.Fatalf("parse refused valid %q: %v", data, err)
		}
	})
}

func lonesurrogate(err error) bool {
	return err != nil && strings.Contains(err.Error(), "surrogate")
}
