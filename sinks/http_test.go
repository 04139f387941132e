package sinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/testcert"
)

// request is what a test server received.
type request struct {
	method, uri string
	header      http.Header
	body        []byte // decompressed if it was gzipped
	host        string
	peer        string // CN of the client certificate
}

// server is a test server that records every request and answers with
// respond (200 if nil).
type server struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

type respondFunc func(w http.ResponseWriter, r *http.Request, body []byte)

func newServer(t *testing.T, respond respondFunc) *server {
	s := &server{}
	s.Server = httptest.NewServer(s.handler(t, respond))
	t.Cleanup(s.Close)
	return s
}

func (s *server) handler(t *testing.T, respond respondFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		var err error
		if r.Header.Get("Content-Encoding") == "gzip" {
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(r.Body); err == nil {
				body, err = io.ReadAll(zr)
			}
		} else {
			body, err = io.ReadAll(r.Body)
		}
		if err != nil {
			t.Errorf("server: read body: %v", err)
		}
		req := request{method: r.Method, uri: r.RequestURI, header: r.Header, body: body, host: r.Host}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			req.peer = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		if respond != nil {
			respond(w, r, body)
		}
	})
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// discardLog silences a test server's log of expected failures.
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

func newHTTP(t *testing.T, cfg HTTPConfig) *HTTP {
	t.Helper()
	s, err := NewHTTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rejectedIndices(t *testing.T, err error) []int {
	t.Helper()
	var rej *batcher.RejectError
	if !errors.As(err, &rej) {
		t.Fatalf("got %v, want a *RejectError", err)
	}
	idx := make([]int, len(rej.Records))
	for i, r := range rej.Records {
		idx[i] = r.Index
	}
	return idx
}

func TestHTTPBodiesMatchGolden(t *testing.T) {
	for _, in := range formatInputs {
		for f := range numFormats {
			t.Run(in.name+"/"+f.String(), func(t *testing.T) {
				srv := newServer(t, nil)
				s := newHTTP(t, HTTPConfig{URL: srv.URL, Format: f})
				b := readInput(t, in.name, in.delim)
				err := s.Deliver(context.Background(), b)
				_, wantRej := f.Encode(nil, b)
				if len(wantRej) == 0 && err != nil {
					t.Fatal(err)
				}
				if len(wantRej) > 0 {
					var want []int
					for _, r := range wantRej {
						want = append(want, r.Index)
					}
					if got := rejectedIndices(t, err); !slices.Equal(got, want) {
						t.Errorf("rejected %v, want %v", got, want)
					}
				}
				reqs := srv.requests()
				if len(reqs) != 1 {
					t.Fatalf("%d requests, want 1", len(reqs))
				}
				golden(t, in.name+"."+f.String()+".golden", reqs[0].body)
				if got := reqs[0].header.Get("Content-Type"); got != f.ContentType() {
					t.Errorf("Content-Type %q, want %q", got, f.ContentType())
				}
			})
		}
	}
}

func TestHTTPGzip(t *testing.T) {
	srv := newServer(t, nil)
	for _, f := range []Format{Lines, NDJSON} {
		s := newHTTP(t, HTTPConfig{URL: srv.URL, Gzip: true, Format: f})
		// Several batches, so pooled gzip writers are reused.
		for n := 1; n <= 3; n++ {
			recs := make([][]byte, n*100)
			for i := range recs {
				recs[i] = fmt.Appendf(nil, `{"batch":%d,"i":%d}`, n, i)
			}
			b := batchOf(t, '\n', recs...)
			if err := s.Deliver(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			reqs := srv.requests()
			last := reqs[len(reqs)-1]
			if !bytes.Equal(last.body, b.Bytes()) { // both formats: the same bytes here
				t.Errorf("%v batch %d: server got %d bytes after gunzip, want %d", f, n, len(last.body), b.Size())
			}
			if last.header.Get("Content-Encoding") != "gzip" {
				t.Errorf("no Content-Encoding: gzip")
			}
		}
	}
}

func TestHTTPHeadersMethodAndSeq(t *testing.T) {
	srv := newServer(t, nil)
	h := http.Header{}
	h.Add("Authorization", "Bearer tok")
	h.Add("X-Multi", "a")
	h.Add("X-Multi", "b")
	h.Add("Host", "ingest.example")
	u := strings.Replace(srv.URL, "http://", "http://user:pw@", 1) + "/batches/{seq}.log?x={seq}"
	s := newHTTP(t, HTTPConfig{URL: u, Method: http.MethodPut, Header: h, ContentType: "text/csv", UserAgent: "batchpipe/test"})
	for seq := int64(41); seq <= 42; seq++ {
		b := batchOf(t, '\n', lines("a,b", "c,d")...)
		b.Seq = seq
		if err := s.Deliver(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	reqs := srv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		seq := 41 + i
		if want := fmt.Sprintf("/batches/%d.log?x=%d", seq, seq); r.uri != want {
			t.Errorf("URI %q, want %q", r.uri, want)
		}
		user, pw, _ := (&http.Request{Header: r.header}).BasicAuth()
		checks := []struct{ what, got, want string }{
			{"method", r.method, "PUT"},
			{"Authorization", r.header.Get("Authorization"), "Bearer tok"},
			{"X-Multi", strings.Join(r.header.Values("X-Multi"), ","), "a,b"},
			{"Host", r.host, "ingest.example"},
			{"Content-Type", r.header.Get("Content-Type"), "text/csv"},
			{"User-Agent", r.header.Get("User-Agent"), "batchpipe/test"},
			{"body", string(r.body), "a,b\nc,d\n"},
		}
		// The header wins over the URL's user info, as in net/http.
		if user != "" || pw != "" {
			t.Errorf("basic auth %q:%q sent despite an Authorization header", user, pw)
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("request %d: %s %q, want %q", i, c.what, c.got, c.want)
			}
		}
	}
}

func TestHTTPBasicAuthFromURL(t *testing.T) {
	srv := newServer(t, nil)
	s := newHTTP(t, HTTPConfig{URL: strings.Replace(srv.URL, "http://", "http://user:p%40ss@", 1)})
	if err := s.Deliver(context.Background(), batchOf(t, '\n', lines("x")...)); err != nil {
		t.Fatal(err)
	}
	r := srv.requests()[0]
	user, pw, ok := (&http.Request{Header: r.header}).BasicAuth()
	if !ok || user != "user" || pw != "p@ss" {
		t.Errorf("basic auth %q:%q (%v), want user:p@ss", user, pw, ok)
	}
}

func TestHTTPStatuses(t *testing.T) {
	for _, tc := range []struct {
		code  int
		retry bool
	}{
		{200, false}, {201, false}, {204, false},
		{400, false}, {401, false}, {403, false}, {404, false}, {409, false}, {422, false},
		{408, true}, {429, true},
		{500, true}, {502, true}, {503, true}, {504, true}, {507, true},
		{501, false}, {505, false},
		{301, false}, {302, false}, {307, false},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				if r.URL.Path == "/elsewhere" {
					t.Error("followed a redirect")
				}
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(tc.code)
				fmt.Fprintf(w, "  reason for %d\n", tc.code)
			})
			s := newHTTP(t, HTTPConfig{URL: srv.URL + "/in"})
			err := s.Deliver(context.Background(), batchOf(t, '\n', lines("a", "b")...))
			if tc.code < 300 {
				if err != nil {
					t.Fatalf("%d: %v", tc.code, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%d: no error", tc.code)
			}
			if batcher.IsPermanent(err) == tc.retry {
				t.Errorf("%d: permanent = %v, want %v (%v)", tc.code, !tc.retry, !tc.retry, err)
			}
			want := fmt.Sprintf("POST %s/…: %d %s: \"reason for %d\"", srv.URL, tc.code, http.StatusText(tc.code), tc.code)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\ndoes not hold %q", err, want)
			}
		})
	}
}

func TestHTTPErrorQuotesStartOfBody(t *testing.T) {
	long := strings.Repeat("x", 600) + "END"
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, long)
	})
	s := newHTTP(t, HTTPConfig{URL: srv.URL})
	err := s.Deliver(context.Background(), batchOf(t, '\n', lines("a")...))
	if err == nil || !strings.HasSuffix(err.Error(), `"`+strings.Repeat("x", 512)+`…"`) {
		t.Errorf("error does not end with the first 512 bytes of the body and …: %v", err)
	}
}

func TestHTTPTimeoutAndDroppedConnection(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch string(body) {
		case "slow\n":
			<-r.Context().Done() // until the client gives up
		case "drop\n":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
		}
	})
	// The dropped connection gets a long timeout: on a loaded machine
	// 100ms can pass before the drop is seen, and the error would then be
	// the timeout's.
	short := newHTTP(t, HTTPConfig{URL: srv.URL, Timeout: 100 * time.Millisecond})
	long := newHTTP(t, HTTPConfig{URL: srv.URL, Timeout: time.Minute})
	for _, tc := range []struct {
		s          *HTTP
		body, want string
	}{
		{short, "slow", "no response within 100ms (--timeout)"},
		{long, "drop", "EOF"},
	} {
		err := tc.s.Deliver(context.Background(), batchOf(t, '\n', lines(tc.body)...))
		if err == nil || batcher.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a retryable error saying %q", tc.body, err, tc.want)
		}
	}
	// The sinks still work after both.
	if err := short.Deliver(context.Background(), batchOf(t, '\n', lines("ok")...)); err != nil {
		t.Error(err)
	}
	if err := long.Deliver(context.Background(), batchOf(t, '\n', lines("ok")...)); err != nil {
		t.Error(err)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"Sat, 01 Mar 2025 12:00:07 GMT", 7 * time.Second, true},
		{"Saturday, 01-Mar-25 12:00:03 GMT", 3 * time.Second, true}, // RFC 850
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true},                  // past
		{"99999999999999999999", 0, false},
		{"18446744073709551615", time.Duration(1<<32) * time.Second, true},
		{"", 0, false},
		{"soon", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
	} {
		got, ok := retryAfter(tc.v, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

// TestHTTPRetryAfterRespected gets the errors of real 429 and 503 responses
// with Retry-After, then has a pipeline retry them on a fake clock: the
// wait is what the header asked for, capped by the maximum backoff.
func TestHTTPRetryAfterRespected(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch string(body) {
		case "seconds\n":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case "date\n":
			w.Header().Set("Retry-After", now.Add(7*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	s := newHTTP(t, HTTPConfig{URL: srv.URL})
	s.now = func() time.Time { return now }
	sinkErr := func(body string) error {
		err := s.Deliver(context.Background(), batchOf(t, '\n', lines(body)...))
		if err == nil || batcher.IsPermanent(err) {
			t.Fatalf("%s: got %v, want a retryable error", body, err)
		}
		return err
	}
	for _, tc := range []struct {
		name       string
		err        error
		maxBackoff time.Duration
		want       time.Duration
	}{
		{"429 Retry-After: 1", sinkErr("seconds"), time.Minute, time.Second},
		{"503 Retry-After: date+7s", sinkErr("date"), time.Minute, 7 * time.Second},
		{"503 Retry-After: date+7s, max backoff 3s", sinkErr("date"), 3 * time.Second, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var attempts []time.Time
				p := &batcher.Pipeline{
					Source: recordSource(lines("r")),
					Sink: sinkFunc(func(ctx context.Context, b *batcher.Batch) error {
						attempts = append(attempts, time.Now())
						if len(attempts) == 1 {
							return tc.err
						}
						return nil
					}),
					Config: batcher.Config{Delim: '\n', Retries: 1, Backoff: time.Hour, MaxBackoff: tc.maxBackoff},
				}
				st, err := p.Run(context.Background())
				if err != nil || st.Delivered != 1 || len(attempts) != 2 {
					t.Fatalf("run: %v, %d delivered, %d attempts", err, st.Delivered, len(attempts))
				}
				if got := attempts[1].Sub(attempts[0]); got != tc.want {
					t.Errorf("retried after %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// tooLarge answers 413 to bodies over limit bytes, and 200 otherwise.
func tooLarge(limit int) respondFunc {
	return func(w http.ResponseWriter, _ *http.Request, body []byte) {
		if len(body) > limit {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		}
	}
}

func TestHTTP413Splits(t *testing.T) {
	srv := newServer(t, tooLarge(300))
	s := newHTTP(t, HTTPConfig{URL: srv.URL + "/b/{seq}"})
	recs := make([][]byte, 40)
	for i := range recs {
		recs[i] = fmt.Appendf(nil, "record %02d %s", i, strings.Repeat(".", 20))
	}
	const big = 29
	recs[big] = bytes.Repeat([]byte("B"), 500)
	b := batchOf(t, '\n', recs...)
	b.Seq = 7
	err := s.Deliver(context.Background(), b)
	if got := rejectedIndices(t, err); !slices.Equal(got, []int{big}) {
		t.Fatalf("rejected %v, want [%d]", got, big)
	}
	if msg := err.Error(); !strings.Contains(msg, b.Pos(big).String()+" (500 bytes) is too large") || !strings.Contains(msg, "413") {
		t.Errorf("rejection does not name the record and the 413: %v", err)
	}
	var got [][]byte
	seen := map[string]bool{}
	for _, r := range srv.requests() {
		if len(r.body) > 300 {
			continue
		}
		if seen[r.uri] {
			t.Errorf("two parts sent to %s: one would overwrite the other", r.uri)
		}
		seen[r.uri] = true
		got = append(got, bytes.SplitAfter(r.body, []byte("\n"))...)
	}
	var want [][]byte
	for i, r := range recs {
		if i != big {
			want = append(want, append(r, '\n'))
		}
	}
	got = slices.DeleteFunc(got, func(l []byte) bool { return len(l) == 0 })
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("server got %d records, want each of the %d others once, in order", len(got), len(want))
	}
	for uri := range seen {
		if !strings.HasPrefix(uri, "/b/7-1") && !strings.HasPrefix(uri, "/b/7-2") {
			t.Errorf("part sent to %s, want /b/7-1… or /b/7-2…", uri)
		}
	}
}

// TestHTTP413ThenRetryable splits a batch on a 413; one part then meets a
// 503. Only that part's records are sent again, under a name of their own,
// and every record is accepted exactly once.
func TestHTTP413ThenRetryable(t *testing.T) {
	var mu sync.Mutex
	accepted := map[string]int{}
	uris := map[string]bool{}
	failed := false
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case len(body) > 8:
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case bytes.Contains(body, []byte("c")) && !failed:
			failed = true
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			if uris[r.RequestURI] {
				t.Errorf("%s accepted twice: the second replaced the first", r.RequestURI)
			}
			uris[r.RequestURI] = true
			for l := range bytes.Lines(body) {
				accepted[string(l)]++
			}
		}
	})
	p := &batcher.Pipeline{
		Source: recordSource(lines("a", "b", "c", "d", "e", "f", "g", "h")),
		Sink:   newHTTP(t, HTTPConfig{URL: srv.URL + "/b/{seq}"}),
		Config: batcher.Config{Delim: '\n', Retries: 2, Backoff: time.Millisecond},
	}
	st, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Delivered != 8 || st.Retries != 1 || st.BatchesDone != 1 {
		t.Errorf("stats %+v", st)
	}
	for _, r := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		if accepted[r+"\n"] != 1 {
			t.Errorf("record %s accepted %d times", r, accepted[r+"\n"])
		}
	}
	if !uris["/b/1-r2"] {
		t.Errorf("the part sent again went to %v, want /b/1-r2", uris)
	}
}

func TestHTTP413WithRejectsAndPermanentPart(t *testing.T) {
	// Bodies over 100 bytes are too large; one holding "poison" is a 400.
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch {
		case len(body) > 100:
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case bytes.Contains(body, []byte("poison")):
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	s := newHTTP(t, HTTPConfig{URL: srv.URL, Format: NDJSON})
	recs := lines(`{"i":0}`, `{"i":1}`, `bad json`, `{"i":3}`, `{"i":4,"x":"poison"}`, `{"i":5}`, `{"i":6}`,
		`{"i":7}`, `{"i":8}`, `{"i":9}`, `{"i":10}`, `{"i":11}`, `{"i":12}`, `{"i":13}`, `{"i":14}`, `{"i":15}`)
	b := batchOf(t, '\n', recs...)
	err := s.Deliver(context.Background(), b)
	rejected := rejectedIndices(t, err)
	if !slices.IsSorted(rejected) || !slices.Contains(rejected, 2) || !slices.Contains(rejected, 4) {
		t.Fatalf("rejected %v, want the bad JSON (2) and the poison (4), in order", rejected)
	}
	var rej *batcher.RejectError
	errors.As(err, &rej)
	for _, r := range rej.Records {
		want := "400 Bad Request"
		if r.Index == 2 {
			want = "is not valid JSON"
		}
		if !strings.Contains(r.Err.Error(), want) {
			t.Errorf("record %d rejected for %v, want %q", r.Index, r.Err, want)
		}
	}
	delivered := map[string]bool{}
	for _, r := range srv.requests() {
		if len(r.body) <= 100 && !bytes.Contains(r.body, []byte("poison")) {
			for l := range bytes.Lines(r.body) {
				delivered[string(l)] = true
			}
		}
	}
	for i, r := range recs {
		if delivered[string(r)+"\n"] == slices.Contains(rejected, i) {
			t.Errorf("record %d %s: delivered %v, rejected %v", i, r, delivered[string(r)+"\n"], slices.Contains(rejected, i))
		}
	}
}

func TestHTTPTLS(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		name      string
		mutual    bool
		cfg       HTTPConfig
		wantErr   string // "" for success
		permanent bool
	}{
		{"test CA", false, HTTPConfig{CACert: certs.CAFile}, "", false},
		{"system roots", false, HTTPConfig{}, "certificate signed by unknown authority", true},
		{"insecure", false, HTTPConfig{Insecure: true}, "", false},
		{"mutual", true, HTTPConfig{CACert: certs.CAFile, Cert: certs.ClientCert, Key: certs.ClientKey}, "", false},
		// TLS 1.3 clients learn of the refusal only when they read, and
		// may first fail to write: the message varies, so TLS 1.2 is
		// used to check it, and 1.3 just for the failure.
		{"mutual without client cert, TLS 1.2", true, HTTPConfig{CACert: certs.CAFile}, "remote error: tls: handshake failure", true},
		{"mutual without client cert, TLS 1.3", true, HTTPConfig{CACert: certs.CAFile}, "http sink: POST https://", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &server{}
			srv.Server = httptest.NewUnstartedServer(srv.handler(t, nil))
			srv.TLS = certs.ServerConfig(tc.mutual)
			if strings.HasSuffix(tc.name, "TLS 1.2") {
				srv.TLS.MaxVersion = tls.VersionTLS12
			}
			srv.Config.ErrorLog = discardLog() // expected handshake failures
			srv.StartTLS()
			defer srv.Close()
			cfg := tc.cfg
			cfg.URL = srv.URL
			s := newHTTP(t, cfg)
			err := s.Deliver(context.Background(), batchOf(t, '\n', lines("secure")...))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				r := srv.requests()[0]
				if string(r.body) != "secure\n" {
					t.Errorf("server got %q", r.body)
				}
				if tc.mutual && r.peer != "batchpipe test" {
					t.Errorf("client certificate %q, want the test one", r.peer)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || tc.permanent && !batcher.IsPermanent(err) {
				t.Errorf("got %v (permanent %v), want %q (permanent %v)", err, batcher.IsPermanent(err), tc.wantErr, tc.permanent)
			}
			if n := len(srv.requests()); n > 0 {
				t.Errorf("the server handled %d requests", n)
			}
		})
	}
}

func TestHTTPSecretsStayOutOfErrors(t *testing.T) {
	secrets := []string{"PASSWORD-1", "HEADER-TOKEN-2", "PATH-TOKEN-3", "QUERY-TOKEN-4"}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch string(body) {
		case "500\n":
			http.Error(w, "internal", http.StatusInternalServerError)
		case "slow\n":
			<-r.Context().Done()
		}
	})
	rest := "@" + strings.TrimPrefix(srv.URL, "http://") + "/hooks/PATH-TOKEN-3?api_key=QUERY-TOKEN-4"
	h := http.Header{"Authorization": {"Bearer HEADER-TOKEN-2"}}
	var errs []error
	for _, u := range []string{"http://user:PASSWORD-1" + rest, "http://user:PASSWORD-1@127.0.0.1:1/hooks/PATH-TOKEN-3?api_key=QUERY-TOKEN-4"} {
		s := newHTTP(t, HTTPConfig{URL: u, Header: h, Timeout: 100 * time.Millisecond})
		for _, body := range []string{"500", "slow"} {
			errs = append(errs, s.Deliver(context.Background(), batchOf(t, '\n', lines(body)...)))
		}
	}
	for _, u := range []string{
		"http://user:PASSWORD-1@host:port/",
		"ftp://user:PASSWORD-1@host/PATH-TOKEN-3",
		"http://user:PASSWORD-1@/PATH-TOKEN-3",
		"http://user:PASSWORD-1@host/PATH-TOKEN-3#QUERY-TOKEN-4",
		"http://user:PASSWORD-1@host/PATH-TOKEN-3 %zz",
		"http://user:PASSWORD-1@host/\x7f",
	} {
		_, err := NewHTTP(HTTPConfig{URL: u})
		errs = append(errs, err)
	}
	for _, hv := range []string{"Authorization Bearer HEADER-TOKEN-2", "X-Key: HEADER-TOKEN-2\r\nX-Other: 1"} {
		_, _, err := ParseHeader(hv)
		errs = append(errs, err)
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("case %d: error shows %s: %v", i, s, err)
			}
		}
	}
}

func TestNewHTTPRefuses(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		cfg  HTTPConfig
		want string
	}{
		{HTTPConfig{URL: "localhost:8080/x"}, "no http:// or https:// in front"},
		{HTTPConfig{URL: "http:///x"}, "has no host"},
		{HTTPConfig{URL: "https://h/", Method: "PO ST"}, `method "PO ST" is not a valid HTTP method`},
		{HTTPConfig{URL: "http://h/", CACert: certs.CAFile}, "need an https:// URL"},
		{HTTPConfig{URL: "https://h/", Cert: certs.ClientCert}, "--cert and --key go together"},
		{HTTPConfig{URL: "https://h/", CACert: certs.CAFile, Insecure: true}, "contradict"},
		{HTTPConfig{URL: "https://h/", CACert: certs.ClientKey}, "no PEM certificate"},
		{HTTPConfig{URL: "https://h/", CACert: "/nonexistent/ca.pem"}, "no such file"},
		{HTTPConfig{URL: "https://h/", Cert: certs.ClientCert, Key: certs.CAFile}, "client certificate"},
		{HTTPConfig{URL: "http://h/", ContentType: "a/b", Header: http.Header{"Content-Type": {"c/d"}}}, "given twice"},
		{HTTPConfig{URL: "http://h/", Gzip: true, Header: http.Header{"Content-Encoding": {"br"}}}, "--gzip sets Content-Encoding"},
		{HTTPConfig{URL: "http://h/", Timeout: -time.Second}, "timeout must be positive"},
	} {
		_, err := NewHTTP(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewHTTP(%+v) = %v; want an error saying %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct{ in, name, value, err string }{
		{"X-A: b", "X-A", "b", ""},
		{"x-a:b:c ", "x-a", "b:c", ""},
		{"Empty:", "Empty", "", ""},
		{"no colon", "", "", "found no colon"},
		{"Bad Name: v", "", "", `"Bad Name" is not a valid header name`},
		{": v", "", "", `"" is not a valid header name`},
		{"X: a\nb", "", "", "control character"},
		{"X-Token: ab\x01cd", "", "", "control character"},
		{"X: a\tb", "X", "a\tb", ""},
	} {
		name, value, err := ParseHeader(tc.in)
		if name != tc.name || value != tc.value || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseHeader(%q) = %q, %q, %v; want %q, %q, %q", tc.in, name, value, err, tc.name, tc.value, tc.err)
		}
	}
}

func BenchmarkHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	recs := make([][]byte, 1000)
	for i := range recs {
		recs[i] = fmt.Appendf(nil, `{"ts":"2024-05-01T12:00:00Z","level":"info","msg":"request served","n":%d}`, i)
	}
	batch := batchOf(b, '\n', recs...)
	for _, bc := range []struct {
		name string
		cfg  HTTPConfig
	}{
		{"lines", HTTPConfig{}},
		{"ndjson", HTTPConfig{Format: NDJSON}},
		{"lines-gzip", HTTPConfig{Gzip: true}},
	} {
		for _, j := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/j%d", bc.name, j), func(b *testing.B) {
				cfg := bc.cfg
				cfg.URL, cfg.Parallel = srv.URL, j
				s, err := NewHTTP(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				b.SetBytes(int64(batch.Size()))
				// j workers, as the pipeline runs for -j.
				ctx := context.Background()
				var n sync.WaitGroup
				work := make(chan struct{})
				for range j {
					n.Go(func() {
						for range work {
							if err := s.Deliver(ctx, batch); err != nil {
								b.Error(err)
							}
						}
					})
				}
				b.ResetTimer()
				for range b.N {
					work <- struct{}{}
				}
				close(work)
				n.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)*float64(batch.Len())/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// TestHTTPEarlyResponseDoesNotReuseBody has the server refuse large bodies
// without reading them, so the transport is still sending when the
// response arrives, while other deliveries reuse pooled memory. Under the
// race detector, reusing a body still being sent is caught (in most runs:
// it depends on the pool and the scheduler, never on the code being right).
func TestHTTPEarlyResponseDoesNotReuseBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 1<<20 {
			http.Error(w, "too large", http.StatusBadRequest) // body unread
			return
		}
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	srv.Config.ErrorLog = discardLog()
	s := newHTTP(t, HTTPConfig{URL: srv.URL, Parallel: 4})
	big := batchOf(t, '\n', bytes.Repeat([]byte("b"), 4<<20))
	small := batchOf(t, '\n', lines("s1", "s2", "s3")...)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if err := s.Deliver(context.Background(), big); err == nil || !batcher.IsPermanent(err) && !strings.Contains(err.Error(), "connection") && !strings.Contains(err.Error(), "broken pipe") {
					t.Errorf("large body: got %v, want a 400 or a broken connection", err)
				}
				if err := s.Deliver(context.Background(), small); err != nil {
					t.Errorf("small body: %v", err)
				}
			}
		})
	}
	wg.Wait()
}
