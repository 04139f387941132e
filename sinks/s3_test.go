package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// fakeS3 is an in-process S3 of one bucket, path style, enough for the
// sink: PutObject (If-None-Match honoured unless ignoreIfNoneMatch),
// HeadObject, HeadBucket, DeleteObject. fail, if set, answers a request
// first with a status and an error code.
type fakeS3 struct {
	bucket            string
	ignoreIfNoneMatch bool
	fail              func(r *http.Request) (status int, code, msg string)

	mu      sync.Mutex
	objects map[string]fakeObject
	puts    int
}

type fakeObject struct {
	body []byte
	meta http.Header
}

func newFakeS3(t *testing.T, f *fakeS3) *httptest.Server {
	f.objects = map[string]fakeObject{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	body, _ := io.ReadAll(r.Body)
	if f.fail != nil {
		if status, code, msg := f.fail(r); status != 0 {
			w.WriteHeader(status)
			if r.Method != http.MethodHead {
				fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
			}
			return
		}
	}
	if bucket != f.bucket {
		w.WriteHeader(404)
		if r.Method != http.MethodHead {
			fmt.Fprint(w, "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>")
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case key == "" && r.Method == http.MethodHead:
		return
	case r.Method == http.MethodPut:
		if _, ok := f.objects[key]; ok && r.Header.Get("If-None-Match") == "*" && !f.ignoreIfNoneMatch {
			w.WriteHeader(412)
			fmt.Fprint(w, "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>")
			return
		}
		meta := http.Header{}
		for k, v := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-amz-meta-") || k == "Content-Type" || k == "Content-Encoding" {
				meta[k] = v
			}
		}
		f.objects[key] = fakeObject{body: body, meta: meta}
		f.puts++
	case r.Method == http.MethodHead:
		o, ok := f.objects[key]
		if !ok {
			w.WriteHeader(404)
			return
		}
		for k, v := range o.meta {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(o.body)))
	case r.Method == http.MethodDelete:
		delete(f.objects, key)
		w.WriteHeader(204)
	default:
		w.WriteHeader(501)
	}
}

func (f *fakeS3) object(key string) (fakeObject, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objects[key]
	return o, ok
}

// s3Env gives the SDK credentials of its own, and no files or instance
// metadata to look in.
func s3Env(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-do-not-print")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
}

func newTestS3(t *testing.T, srv *httptest.Server, tmpl string, mod func(*S3Config)) (*S3, error) {
	t.Helper()
	s3Env(t)
	cfg := S3Config{Bucket: "bkt", Template: tmpl, Endpoint: srv.URL, PathStyle: true, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewS3(context.Background(), cfg)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func TestS3PutThenFoundInPlace(t *testing.T) {
	f := &fakeS3{bucket: "bkt"}
	srv := newFakeS3(t, f)
	s, err := newTestS3(t, srv, "logs/{seq}.log", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := batchOf(t, '\n', lines("a", "b")...)
	for i := range 2 {
		if err := s.Deliver(context.Background(), b); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	o, ok := f.object("logs/1.log")
	if !ok || string(o.body) != "a\nb\n" {
		t.Fatalf("object logs/1.log = %q, %v; want a\\nb\\n", o.body, ok)
	}
	if got := o.meta.Get("X-Amz-Meta-Batchpipe-Sha256"); len(got) != 64 {
		t.Errorf("x-amz-meta-batchpipe-sha256 = %q, want a hex SHA-256", got)
	}
	if n := s.FoundInPlace(); n != 1 {
		t.Errorf("found in place %d, want 1 (the second delivery)", n)
	}
	if _, ok := f.object(".batchpipe-probe-" + RunID()); ok {
		t.Error("the probe object was left behind")
	}
}

func TestS3OtherBytesAtKeyFailNamingIt(t *testing.T) {
	f := &fakeS3{bucket: "bkt"}
	srv := newFakeS3(t, f)
	s, err := newTestS3(t, srv, "logs/{seq}.log", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), batchOf(t, '\n', lines("a")...)); err != nil {
		t.Fatal(err)
	}
	err = s.Deliver(context.Background(), batchOf(t, '\n', lines("other")...))
	if err == nil || !batcher.IsPermanent(err) || !strings.Contains(err.Error(), "s3://bkt/logs/1.log exists already with other bytes") {
		t.Fatalf("error %v, want a permanent one naming s3://bkt/logs/1.log", err)
	}
	if o, _ := f.object("logs/1.log"); string(o.body) != "a\n" {
		t.Errorf("object overwritten: %q", o.body)
	}
}

func TestS3IfExistsFail(t *testing.T) {
	f := &fakeS3{bucket: "bkt"}
	srv := newFakeS3(t, f)
	s, err := newTestS3(t, srv, "{seq}", func(c *S3Config) { c.IfExists = IfExistsFail })
	if err != nil {
		t.Fatal(err)
	}
	b := batchOf(t, '\n', lines("a")...)
	if err := s.Deliver(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), b); err == nil || !batcher.IsPermanent(err) {
		t.Fatalf("error %v, want a permanent one", err)
	}
}

func TestS3StoreIgnoringIfNoneMatch(t *testing.T) {
	f := &fakeS3{bucket: "bkt", ignoreIfNoneMatch: true}
	srv := newFakeS3(t, f)
	var logs bytes.Buffer
	s, err := newTestS3(t, srv, "{seq}", func(c *S3Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if err != nil {
		t.Fatal(err)
	}
	if !s.headFirst || !strings.Contains(logs.String(), "ignores If-None-Match") {
		t.Fatalf("probe did not find that the store ignores If-None-Match; log: %s", logs.String())
	}
	if err := s.Deliver(context.Background(), batchOf(t, '\n', lines("a")...)); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), batchOf(t, '\n', lines("b")...)); err == nil || !batcher.IsPermanent(err) {
		t.Fatalf("error %v, want a permanent one: HEAD found the key taken", err)
	}
	if o, _ := f.object("1"); string(o.body) != "a\n" {
		t.Errorf("object overwritten: %q", o.body)
	}
}

func TestS3ErrorsRetriedOrNot(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code      string
		permanent bool
	}{
		{503, "SlowDown", false},
		{500, "InternalError", false},
		{409, "ConditionalRequestConflict", false},
		{429, "Throttling", false},
		{403, "AccessDenied", true},
		{404, "NoSuchBucket", true},
		{400, "InvalidArgument", true},
	} {
		t.Run(tc.code, func(t *testing.T) {
			var failing sync.Mutex
			on := false
			f := &fakeS3{bucket: "bkt", fail: func(r *http.Request) (int, string, string) {
				failing.Lock()
				defer failing.Unlock()
				if on && r.Method == http.MethodPut {
					return tc.status, tc.code, "the store says no; key AKIDFAKEFAKE s3cr3t-do-not-print"
				}
				return 0, "", ""
			}}
			srv := newFakeS3(t, f)
			s, err := newTestS3(t, srv, "{seq}", nil)
			if err != nil {
				t.Fatal(err)
			}
			failing.Lock()
			on = true
			failing.Unlock()
			err = s.Deliver(context.Background(), batchOf(t, '\n', lines("a")...))
			if err == nil || batcher.IsPermanent(err) != tc.permanent {
				t.Fatalf("error %v, want permanent %v", err, tc.permanent)
			}
			msg := err.Error()
			if !strings.Contains(msg, "s3://bkt/1") || !strings.Contains(msg, tc.code) {
				t.Errorf("error %q does not name the key and the store's code", msg)
			}
			if strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "AKIDFAKE") {
				t.Errorf("error %q shows a credential", msg)
			}
		})
	}
}

func TestS3StartErrors(t *testing.T) {
	f := &fakeS3{bucket: "bkt", fail: func(r *http.Request) (int, string, string) {
		if r.Header.Get("X-Test-Deny") != "" {
			return 403, "", ""
		}
		return 0, "", ""
	}}
	srv := newFakeS3(t, f)
	_, err := newTestS3(t, srv, "{seq}", func(c *S3Config) { c.Bucket = "missing" })
	var un *UnavailableError
	if !errors.As(err, &un) || !strings.Contains(err.Error(), "s3://missing not found") {
		t.Errorf("missing bucket: %v, want an UnavailableError naming it", err)
	}
	denied := &fakeS3{bucket: "bkt", fail: func(*http.Request) (int, string, string) { return 403, "", "" }}
	_, err = newTestS3(t, newFakeS3(t, denied), "{seq}", nil)
	if err == nil || errors.As(err, &un) || !strings.Contains(err.Error(), "check the credentials") {
		t.Errorf("denied: %v, want an error naming the credentials", err)
	}
	srv.Close()
	_, err = newTestS3(t, srv, "{seq}", nil)
	if !errors.As(err, &un) {
		t.Errorf("store down: %v, want an UnavailableError", err)
	}
}

func TestS3Templates(t *testing.T) {
	for _, tc := range []struct {
		tmpl    string
		exactly bool
		want    string // in the error; "" for none
	}{
		{"{seq}.log", false, ""},
		{"{run}.log", false, "the same name"},
		{"{topic}/{partition}/{first_offset}-{last_offset}.zst", true, ""},
		{"{batch_id}", true, ""},
		{"{date}/{hour}/{batch_id}", true, ""},
		{"{run}-{batch_id}", true, "{run} differs"},
		{"{seq}", true, "{seq} differs"},
		{"{first_offset}", true, "add {partition}"},
		{"{date}.log", true, "same key"},
		{"{nope}", false, "unknown placeholder"},
	} {
		err := CheckS3Template(tc.tmpl, tc.exactly)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q exactly once %v: %v", tc.tmpl, tc.exactly, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q exactly once %v: %v, want %q", tc.tmpl, tc.exactly, err, tc.want)
		}
	}
}

func TestS3KeyTimeFromFirstRecordWithExactlyOnce(t *testing.T) {
	ts := time.Date(2025, 3, 4, 17, 5, 6, 0, time.UTC)
	recs := []batcher.Record{{Data: []byte("x"), Meta: &batcher.Meta{Topic: "t/../x", Partition: 2, Offset: 7, Timestamp: ts}}}
	for _, exactly := range []bool{true, false} {
		s := &S3{exactly: exactly, now: func() time.Time { return ts.Add(48 * time.Hour) }}
		s.tmpl, _ = ParseTemplate("{date}/{hour}/{topic}/{batch_id}", true)
		var key string
		batches(t, batcher.Config{}, recs, func(b *batcher.Batch) { key = s.Key(b) })
		want := "2025-03-04/17/t%2F..%2Fx/t%2F..%2Fx-2-7-7"
		if !exactly {
			want = "2025-03-06/17/t%2F..%2Fx/t%2F..%2Fx-2-7-7" // the upload's time
		}
		if key != want {
			t.Errorf("exactly once %v: key %q, want %q", exactly, key, want)
		}
	}
}

func TestS3RetryKeepsTheKeyPastMidnight(t *testing.T) {
	now := time.Date(2025, 3, 4, 23, 59, 59, 0, time.UTC)
	s := &S3{now: func() time.Time { return now }}
	s.tmpl, _ = ParseTemplate("{date}/{seq}", true)
	b := batchOf(t, '\n', lines("a")...)
	first := s.Key(b)
	now = now.Add(2 * time.Second)
	if again := s.Key(b); again != first {
		t.Errorf("retry key %q, first attempt's %q", again, first)
	}
	s.Settled(b.Seq)
	if later := s.Key(b); later == first {
		t.Errorf("key %q kept after the batch settled", later)
	}
}
