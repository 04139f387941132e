package e2e

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/batchpipe/batchpipe/internal/testcert"
)

// answers for TestHTTPFlakyServer: 30% 503, 10% 429 with Retry-After: 1,
// 10% dropped connections, 10% too slow.
const (
	dropped = -1
	slow    = -2
)

var flaky = [10]int{503, 503, 503, 429, dropped, slow, 200, 200, 200, 200}

func TestHTTPFlakyServer(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		// Each batch, known by its first record, meets up to three
		// failures picked from its hash, then succeeds: every batch can
		// be delivered within the retries, yet all failures occur.
		first, _, _ := bytes.Cut(body, []byte("\n"))
		h := fnv.New32a()
		h.Write(first)
		mu.Lock()
		attempts[string(first)]++
		a := attempts[string(first)]
		mu.Unlock()
		code := 200
		if a <= 3 {
			code = flaky[int(h.Sum32()/[]uint32{1, 10, 100}[a-1])%10]
		}
		switch code {
		case 429:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		case 503:
			http.Error(w, "overloaded", 503)
		case dropped:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return 0
		case slow:
			<-r.Context().Done() // past the client's --timeout
			return 0
		}
		return code
	})
	input := numbered(5000, "record %05d")
	res := run(t, strings.NewReader(input), "-n", "50", "-j", "4", "--retries", "5", "--backoff", "1ms",
		"--max-backoff", "20ms", "http", "--timeout", "200ms", srv.URL+"/ingest")
	if res.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", res.code, res.stderr)
	}
	if m := srv.missing(input); len(m) > 0 {
		t.Fatalf("%d records never arrived, the first %q", len(m), m[0])
	}
	for _, code := range []int{503, 429, 0} {
		if srv.count(code) == 0 {
			t.Errorf("the server never answered %d: the test did not test it", code)
		}
	}
	if !strings.Contains(res.stderr, "5000 delivered in 100 batches") {
		t.Errorf("summary does not say all were delivered:\n%s", res.stderr)
	}
}

func TestHTTPBadRequestIsDeadLetteredWithoutRetry(t *testing.T) {
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		if bytes.Contains(body, []byte("poison")) {
			http.Error(w, "bad batch: contains poison", http.StatusBadRequest)
			return 400
		}
		return 200
	})
	dl := filepath.Join(t.TempDir(), "dead")
	input := strings.Replace(numbered(30, "record %02d"), "record 15", "poison 15", 1)
	res := run(t, strings.NewReader(input), "-n", "10", "--retries", "3", "--backoff", "1ms", "--dead-letter", dl,
		"http", srv.URL)
	if res.code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", res.code, res.stderr)
	}
	want := strings.Join(strings.SplitAfter(input, "\n")[10:20], "")
	if got := readFile(t, dl); got != want {
		t.Errorf("dead letter holds %q, want the batch of records 11-20 %q", got, want)
	}
	if n := srv.count(400); n != 1 {
		t.Errorf("the bad batch was sent %d times, want once", n)
	}
	for _, s := range []string{"400 Bad Request", "bad batch: contains poison", "20 delivered", "10 dead-lettered", "0 retries"} {
		if !strings.Contains(res.stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, res.stderr)
		}
	}
}

func TestHTTPTooLargeSplits(t *testing.T) {
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		if len(body) > 500 {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return 413
		}
		return 200
	})
	dl := filepath.Join(t.TempDir(), "dead")
	lines := strings.SplitAfter(numbered(100, "record %03d"), "\n")
	big := "big " + strings.Repeat("x", 1000) + "\n"
	lines[41] = big // record 42
	input := strings.Join(lines, "")
	res := run(t, strings.NewReader(input), "-n", "50", "--dead-letter", dl, "http", srv.URL)
	if res.code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", res.code, res.stderr)
	}
	if got := readFile(t, dl); got != big {
		t.Errorf("dead letter holds %q, want the big record alone", got)
	}
	rest := strings.Replace(input, big, "", 1)
	if m := srv.missing(rest); len(m) > 0 {
		t.Errorf("%d records never arrived, the first %q", len(m), m[0])
	}
	for _, s := range []string{"record 42 at byte offset 451 (1004 bytes) is too large", "413", "99 delivered", "1 dead-lettered"} {
		if !strings.Contains(res.stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, res.stderr)
		}
	}
}

func TestHTTPInvalidJSONAloneDeadLettered(t *testing.T) {
	srv := newHTTPSink(t, nil, nil)
	dl := filepath.Join(t.TempDir(), "dead")
	input := strings.Replace(numbered(20, `{"n":%d}`), `{"n":7}`, `{"n":7,`, 1)
	res := run(t, strings.NewReader(input), "-n", "10", "--dead-letter", dl, "http", "--format", "ndjson", srv.URL)
	if res.code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", res.code, res.stderr)
	}
	if got := readFile(t, dl); got != "{\"n\":7,\n" {
		t.Errorf("dead letter holds %q, want record 7 alone", got)
	}
	if m := srv.missing(strings.Replace(input, "{\"n\":7,\n", "", 1)); len(m) > 0 {
		t.Errorf("%d valid records never arrived, the first %q", len(m), m[0])
	}
	if !strings.Contains(res.stderr, "record 7 at byte offset 48 is not valid JSON") {
		t.Errorf("stderr does not name record 7:\n%s", res.stderr)
	}
}

func TestHTTPTLS(t *testing.T) {
	certs := testcert.New(t)
	input := numbered(100, "secure %d")
	withTLS := func(mutual bool) func(*httptest.Server) {
		return func(s *httptest.Server) { s.TLS = certs.ServerConfig(mutual) }
	}

	srv := newHTTPSink(t, withTLS(false), nil)
	res := run(t, strings.NewReader(input), "-n", "30", "http", "--cacert", certs.CAFile, srv.URL)
	if res.code != 0 || len(srv.missing(input)) > 0 {
		t.Errorf("TLS with --cacert: exit %d, %d records missing; stderr:\n%s", res.code, len(srv.missing(input)), res.stderr)
	}

	res = run(t, strings.NewReader(input), "-n", "30", "--retries", "3", "http", srv.URL)
	if res.code != 1 || !strings.Contains(res.stderr, "certificate signed by unknown authority") || !strings.Contains(res.stderr, "0 retries") {
		t.Errorf("TLS with the system's CAs: exit %d, want 1, an unknown authority and no retry; stderr:\n%s", res.code, res.stderr)
	}

	mtls := newHTTPSink(t, withTLS(true), func(w http.ResponseWriter, r *http.Request, _ []byte) int {
		if cn := r.TLS.PeerCertificates[0].Subject.CommonName; cn != "batchpipe test" {
			t.Errorf("client certificate %q", cn)
		}
		return 200
	})
	res = run(t, strings.NewReader(input), "-n", "30", "-j", "2", "http",
		"--cacert", certs.CAFile, "--cert", certs.ClientCert, "--key", certs.ClientKey, mtls.URL)
	if res.code != 0 || len(mtls.missing(input)) > 0 {
		t.Errorf("mutual TLS: exit %d, %d records missing; stderr:\n%s", res.code, len(mtls.missing(input)), res.stderr)
	}
}

func TestHTTPSecretsNeverShown(t *testing.T) {
	const token, password = "TOKEN-e2e-1", "PASS-e2e-2"
	var mu sync.Mutex
	sawToken := false
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		mu.Lock()
		sawToken = sawToken || r.Header.Get("Authorization") == "Bearer "+token
		mu.Unlock()
		switch {
		case bytes.HasPrefix(body, []byte("slow")):
			<-r.Context().Done()
			return 0
		case bytes.HasPrefix(body, []byte("bad")):
			// Some error pages echo the request's headers.
			http.Error(w, "no; you sent "+fmt.Sprint(r.Header), http.StatusBadRequest)
			return 400
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
		return 503
	})
	withPass := strings.Replace(srv.URL, "http://", "http://user:"+password+"@", 1) + "/hook/" + token + "?key=" + token
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://user:" + password + "@" + ln.Addr().String() + "/"
	ln.Close() // nothing listens there now
	dl := filepath.Join(t.TempDir(), "dead")
	auth := "Authorization: Bearer " + token
	for _, tc := range []struct {
		input string
		args  []string
		code  int
	}{
		{"503\n", []string{"-v", "--retries", "2", "--backoff", "1ms", "http", "-H", auth, withPass}, 1},
		{"slow\n", []string{"-v", "--retries", "1", "--backoff", "1ms", "http", "--timeout", "100ms", "-H", auth, withPass}, 1},
		{"bad\n", []string{"-v", "--dead-letter", dl, "http", "-H", auth, withPass}, 3},
		{"x\n", []string{"-v", "--retries", "1", "--backoff", "1ms", "http", "-H", auth, closed}, 1},
		{"x\n", []string{"http", "-H", auth, "-X", "BAD METHOD", withPass}, 2},
		{"x\n", []string{"http", "-H", "Authorization " + token, withPass}, 2},
		{"x\n", []string{"http", "ftp://user:" + password + "@h/" + token}, 2},
		{"x\n", []string{"http", "http://user:" + password + "@h:port/"}, 2},
	} {
		res := run(t, strings.NewReader(tc.input), tc.args...)
		if res.code != tc.code {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", tc.args, res.code, tc.code, res.stderr)
		}
		for _, secret := range []string{token, password} {
			if strings.Contains(res.stdout+res.stderr, secret) {
				t.Errorf("%q: output shows %s:\n%s%s", tc.args, secret, res.stdout, res.stderr)
			}
		}
	}
	if !sawToken {
		t.Error("the server never got the token: the test did not test it")
	}
	if _, err := os.Stat(dl); err != nil {
		t.Errorf("the 400 was not dead-lettered: %v", err)
	}
}
