package sinks

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRedactorQuote(t *testing.T) {
	u, err := url.Parse("http://me:pa55word-x@h/hooks/PATHTOKEN9?key=QUERYTOKEN7&q=a%20b")
	if err != nil {
		t.Fatal(err)
	}
	r := newRedactor(http.Header{
		"Authorization": {"Bearer BEARERTOKEN123"},
		"Content-Type":  {"application/json"},
	}, u)
	long := strings.Repeat(".", 20)
	for _, tc := range []struct {
		text  string
		limit int
		want  string
		cut   bool
	}{
		{"token BEARERTOKEN123 bad", 100, "token[redacted] bad", false}, // the space is the value's too
		{"whole: Bearer BEARERTOKEN123", 100, "whole: [redacted]", false},
		{"start only: BEARER…", 100, "start only:[redacted]…", false},
		{"/hooks/PATHTOKEN9?key=QUERYTOKEN7", 100, "/[redacted]/[redacted]?[redacted]", false},
		{"pass pa55word-x", 100, "pass [redacted]", false},
		{"want application/json", 100, "want application/json", false},
		{"short BEAR ok", 100, "short BEAR ok", false},
		// the limit cuts the token: it goes whole, nothing of it is left
		{long + "BEARERTOKEN123" + long, 25, long + "[redacted]", true},
		{long + "BEARERTOKEN123" + long, 20, long, true},
		{long + long, 25, long + ".....", true},
	} {
		got, cut := r.quote([]byte(tc.text), tc.limit)
		if got != tc.want || cut != tc.cut {
			t.Errorf("quote(%q, %d) = %q, %v; want %q, %v", tc.text, tc.limit, got, cut, tc.want, tc.cut)
		}
	}
}

// BenchmarkRedactorQuote is the cost of quoting an error page: paid once
// per failed request, never on success.
func BenchmarkRedactorQuote(b *testing.B) {
	u, _ := url.Parse("https://u:pa55word-x@h/v1/hooks/PATHTOKEN9abcdef?api_key=QUERYTOKEN7abcdef&q=INSERT%20INTO%20logs")
	r := newRedactor(http.Header{"Authorization": {"Bearer " + strings.Repeat("t0K3n", 9)}, "X-Api-Key": {"k3y-" + strings.Repeat("x", 40)}}, u)
	page := []byte(strings.Repeat("error: something went wrong with the request; ", 12))
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		r.quote(page, 512)
	}
}
