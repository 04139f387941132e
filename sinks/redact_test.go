package sinks

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
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
		{"token BEARERTOKEN123 bad", 100, "token [redacted] bad", false},
		{"whole: Bearer BEARERTOKEN123", 100, "whole: [redacted] [redacted]", false}, // the token starts with "bearer"
		{"start only: BEARER…", 100, "start only: [redacted]…", false},
		{"/hooks/PATHTOKEN9?key=QUERYTOKEN7", 100, "/hooks/[redacted]?key=[redacted]", false},
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

// Every letter case and every encoding of a secret is cut; names of query
// parameters, and query values that are SQL rather than tokens, are not.
func TestRedactorForms(t *testing.T) {
	const tok, q, pass = "Hdr/Secret+1\"x", "QuerySecret7", "pa55:wörd"
	u, err := url.Parse("http://me:" + url.QueryEscape(pass) + "@h/api/v2/ingest?query=INSERT%20INTO%20events%20FORMAT%20JSONEachRow&insert_deduplication_token=" + placeholderMark + "&api_key=" + q + "&database=analytics")
	if err != nil {
		t.Fatal(err)
	}
	r := newRedactor(http.Header{"Authorization": {"Bearer " + tok}, "X-Sig": {"sig9Kx2-{batch_id}"}, "Idempotency-Key": {"{batch_id}"}}, u)
	if got := r.redact("sig sig9Kx2-orders-0-5-9 of orders-0-5-9"); got != "sig [redacted]orders-0-5-9 of orders-0-5-9" {
		t.Errorf("a header with a placeholder: %q", got)
	}
	b64 := base64.StdEncoding.EncodeToString
	for _, secret := range []string{tok, q, pass} {
		for _, form := range []string{
			secret, strings.ToLower(secret), strings.ToUpper(secret),
			url.QueryEscape(secret), url.PathEscape(secret), strings.ToLower(url.QueryEscape(secret)),
			strings.Trim(fmt.Sprintf("%q", secret), `"`), strings.ReplaceAll(mustJSON(secret), "/", `\/`),
			b64([]byte(secret)), b64([]byte("x" + secret + "y")), b64([]byte("xy" + secret)),
			base64.URLEncoding.EncodeToString([]byte("x" + secret)),
		} {
			if got := r.redact("echo: " + form + " end"); strings.Contains(got, secret) || got == "echo: "+form+" end" {
				t.Errorf("secret %q as %q: %q", secret, form, got)
			}
		}
	}
	for _, text := range []string{
		"Code: 115. DB::Exception: Unknown setting insert_deduplication_token. (UNKNOWN_SETTING)",
		"Code: 81. DB::Exception: Database analytics does not exist. (UNKNOWN_DATABASE)",
		"404 page not found: /api/v2/ingest",
		"Table default.events does not exist; format JSONEachRow",
		"authorization scheme Bearer refused",
	} {
		if got := r.redact(text); got != text {
			t.Errorf("redact(%q) = %q, want it unchanged", text, got)
		}
	}
}

// Path segments and query values are secrets when they look generated or
// their parameter's name says so; words a person chose are not.
func TestRedactorTokenLike(t *testing.T) {
	u, err := url.Parse("https://hooks.example.com/services/T0123ABCD/B0456EFGH/x9FkQ2mPzL0aB7cDeFgHiJkL?format=JSONEachRow&password=correcthorse&sig=abc")
	if err != nil {
		t.Fatal(err)
	}
	r := newRedactor(http.Header{}, u)
	for text, want := range map[string]string{
		"no such service: services/T0123ABCD/B0456EFGH":    "no such service: services/[redacted]/[redacted]",
		"invalid token x9FkQ2mPzL0aB7cDeFgHiJkL":           "invalid token [redacted]",
		"bad format JSONEachRow for password correcthorse": "bad format JSONEachRow for password [redacted]",
	} {
		if got := r.redact(text); got != want {
			t.Errorf("redact(%q) = %q, want %q", text, got, want)
		}
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
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
