package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// A server that echoes the request in another letter case, URL-escaped,
// JSON-escaped or in base64: no run of 6 bytes of a secret, in any of these
// forms, appears in stderr (text or JSON), the stats file or the dead
// letters' reasons.
func TestHTTPSecretsInEveryCaseAndEncoding(t *testing.T) {
	const (
		token = `hQ7zKw1/Ab+Cd"Ef\Gh` // JSON and URLs escape some of it
		query = "qV9xJr4/Zy+Xw=Vu"
		pass  = "pW5mTk8+Qp/On"
	)
	echo := map[string]func(string) string{
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
		"url":   url.QueryEscape,
		"path":  url.PathEscape,
		"json": func(s string) string {
			b, _ := json.Marshal(s)
			return string(b)
		},
		"base64":    func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64url": func(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) },
	}
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		form := strings.TrimSpace(string(body))
		var dump strings.Builder
		fmt.Fprintf(&dump, "%s %s\n", r.Method, r.RequestURI)
		r.Header.Write(&dump)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, echo[form](dump.String()))
		return 400
	})
	u := strings.Replace(srv.URL, "http://", "http://user:"+url.QueryEscape(pass)+"@", 1) + "/ingest?api_key=" + url.QueryEscape(query)
	dir := t.TempDir()
	for form := range echo {
		for _, flags := range [][]string{{"-v", "--dead-letter", filepath.Join(dir, "dl")}, {"--log-format", "json"}} {
			stats := filepath.Join(dir, "stats.json")
			args := append(append([]string{"--stats-file", stats}, flags...), "http", "-H", "Authorization: Bearer "+token, u)
			r := run(t, strings.NewReader(form+"\n"), args...)
			if r.code != 3 && r.code != 1 || !strings.Contains(r.stderr, "400 Bad Request") {
				t.Fatalf("%s %q: exit %d, want 1 or 3 and the 400; stderr:\n%s", form, flags, r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "[redacted]") {
				t.Errorf("%s %q: nothing redacted: the server did not echo? stderr:\n%s", form, flags, r.stderr)
			}
			out := strings.ToLower(r.stdout + r.stderr + readFile(t, stats))
			for _, secret := range []string{token, query, pass} {
				for name, enc := range echo {
					if part := leaks(out, strings.ToLower(enc(secret))); part != "" {
						t.Errorf("echoed %s %q: output shows %q of the %s form of %q:\n%s", form, flags, part, name, secret, r.stderr)
					}
				}
			}
		}
	}
}

// ClickHouse names the setting it does not know: the parameter's name is
// no secret, nor is the SQL in the query.
func TestHTTPRedactionKeepsParameterNames(t *testing.T) {
	const msg = "Code: 115. DB::Exception: Unknown setting insert_deduplication_token. (UNKNOWN_SETTING) in INSERT INTO events"
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		http.Error(w, msg, http.StatusNotFound)
		return 404
	})
	r := run(t, strings.NewReader("{}\n"), "http",
		srv.URL+"/?query=INSERT%20INTO%20events%20FORMAT%20JSONEachRow&insert_deduplication_token={batch_id}&password=pwSecret7")
	if r.code != 1 || !strings.Contains(r.stderr, msg) {
		t.Errorf("exit %d, want 1 quoting %q; stderr:\n%s", r.code, msg, r.stderr)
	}
}

// A server that names the endpoint it has no handler for is quoted as it
// said it: path segments a person chose are no secret. A segment that
// looks generated (a webhook's token) is still cut out.
func TestHTTPRedactionKeepsPathWords(t *testing.T) {
	const hook = "x9FkQ2mPzL0aB7cDeFgHiJkL"
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		http.Error(w, "no route for "+r.URL.Path+" in service analytics", http.StatusNotFound)
		return 404
	})
	r := run(t, strings.NewReader("{}\n"), "--retries", "0", "http", srv.URL+"/api/v2/ingest/events/"+hook)
	want := "no route for /api/v2/ingest/events/[redacted] in service analytics"
	if r.code != 1 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, hook[:6]) {
		t.Errorf("exit %d, want 1 quoting %q; stderr:\n%s", r.code, want, r.stderr)
	}
}
