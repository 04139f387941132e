package sinks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// kafkaBatch runs records of one partition at offsets first… through a
// pipeline and hands the batch to f.
func kafkaBatch(t *testing.T, topic string, part int32, first int64, n int, key string, f func(b *batcher.Batch)) {
	t.Helper()
	recs := make([]batcher.Record, n)
	for i := range recs {
		recs[i] = batcher.Record{Data: []byte("r"), Meta: &batcher.Meta{Topic: topic, Partition: part, Offset: first + int64(i)}}
	}
	cfg := batcher.Config{Delim: '\n'}
	if key != "" {
		cfg.Key = func(dst []byte, r *batcher.Record) ([]byte, error) {
			if key == "<empty>" {
				return dst, nil
			}
			return append(dst, key...), nil
		}
	}
	p := &batcher.Pipeline{Source: sliceSource(recs), Sink: sinkFunc(func(ctx context.Context, b *batcher.Batch) error {
		f(b)
		return nil
	}), Config: cfg}
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTemplateIdentityPlaceholders(t *testing.T) {
	tm, err := ParseTemplate("{topic}/{partition}/{first_offset}-{last_offset} {batch_id} {key}", true)
	if err != nil {
		t.Fatal(err)
	}
	kafkaBatch(t, "orders", 3, 40, 5, "a b/c", func(b *batcher.Batch) {
		v := BatchValues(b, sampleNow)
		if got, want := string(tm.Render(nil, v, pathEscape)), "orders/3/40-44 orders-3-40-44 a%20b%2Fc"; got != want {
			t.Errorf("path: %q, want %q", got, want)
		}
		if got, want := string(tm.Render(nil, v, urlEscape)), "orders/3/40-44 orders-3-40-44 a%20b%2Fc"; got != want {
			t.Errorf("url: %q, want %q", got, want)
		}
		if got, want := string(tm.Render(nil, v, headerEscape)), "orders/3/40-44 orders-3-40-44 a b/c"; got != want {
			t.Errorf("header: %q, want %q", got, want)
		}
	})
	stdin := &batcher.Batch{Seq: 2}
	if got := string(tm.Render(nil, BatchValues(stdin, sampleNow), pathEscape)); got != "none/none/none-none none %" {
		t.Errorf("without Kafka: %q", got)
	}
}

func TestTemplateRefusesUnknownPlaceholders(t *testing.T) {
	if _, err := ParseTemplate("x/{batchid}", true); err == nil || !strings.Contains(err.Error(), "{batchid}") {
		t.Fatalf("want an error naming {batchid}, got %v", err)
	}
	tm, err := ParseTemplate(`{"a":1} {batch_id}`, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tm.Render(nil, sampleValues, headerEscape)); got != `{"a":1} topic-0-0-0` {
		t.Fatalf("lenient: %q", got)
	}
}

func TestPerBatchKeysStayInTheDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := NewPerBatch(filepath.Join(dir, "{key}", "{seq}"), Lines)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"../x": "..%2Fx", "/etc/passwd": "%2Fetc%2Fpasswd", "<empty>": "%", "..": "%2E%2E"} {
		kafkaBatch(t, "t", 0, 0, 1, key, func(b *batcher.Batch) {
			name := s.Name(b)
			if name != filepath.Join(dir, want, "1") {
				t.Errorf("key %q: %q", key, name)
			}
			if rel, err := filepath.Rel(dir, filepath.Clean(name)); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || strings.Count(rel, "/") != 1 {
				t.Errorf("key %q climbs out: %q", key, name)
			}
		})
	}
}

func TestPerBatchSameBytesCountAsDelivered(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewPerBatch(filepath.Join(dir, "{first_offset}-{last_offset}"), Lines)
	var b1 *batcher.Batch
	kafkaBatch(t, "t", 0, 7, 2, "", func(b *batcher.Batch) {
		b1 = b.Pick([]int{0, 1}) // a copy: b's memory is recycled
		if err := s.Deliver(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		// The same batch again: a retry, or a run after a crash.
		if err := s.Deliver(context.Background(), b); err != nil {
			t.Fatalf("same bytes again: %v", err)
		}
	})
	name := filepath.Join(dir, "7-8")
	if got, _ := os.ReadFile(name); string(got) != "r\nr\n" {
		t.Fatalf("%s: %q", name, got)
	}
	os.WriteFile(name, []byte("other\n"), 0o644)
	err := s.Deliver(context.Background(), b1)
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "other bytes") || !batcher.IsPermanent(err) {
		t.Fatalf("want a permanent error naming %s, got %v", name, err)
	}
}

var sampleNow = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func TestHTTPIdentityInURLAndHeaders(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.URL.RequestURI()+" "+r.Header.Get("Idempotency-Key")+" "+r.Header.Get("X-Json"))
	}))
	defer srv.Close()
	s := newHTTP(t, HTTPConfig{URL: srv.URL + "/{key}/ins?insert_deduplication_token={batch_id}",
		Header: http.Header{"Idempotency-Key": {"{batch_id}"}, "X-Json": {`{"k":"{key}"}`}}})
	kafkaBatch(t, "orders", 2, 5, 3, "a b&c", func(b *batcher.Batch) {
		if err := s.Deliver(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	})
	want := `/a%2520b%2526c/ins?insert_deduplication_token=orders-2-5-7 orders-2-5-7 {"k":"a b&c"}`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSegmentEscape(t *testing.T) {
	seen := map[string]string{}
	for key, want := range map[string]string{
		"":           "%25",
		".":          "%252E",
		"..":         "%252E%252E",
		"a.b":        "a.b",
		"a/b":        "a%252Fb",
		"a%2Fb":      "a%25252Fb",
		"..%2Fadmin": "..%25252Fadmin",
		"%2e%2e":     "%25252e%25252e",
		"é~":         "%25C3%25A9%257E",
	} {
		got := string(segmentEscape(nil, key))
		if got != want {
			t.Errorf("segmentEscape(%q) = %q, want %q", key, got, want)
		}
		// Decoded once, as a proxy does: one segment, not a dot segment.
		once, err := url.PathUnescape(got)
		if err != nil || once == "" || once == "." || once == ".." || strings.Contains(once, "/") {
			t.Errorf("key %q: decoded once %q (%v)", key, once, err)
		}
		// Decoded twice, as a receiver does: the key.
		twice, err := url.PathUnescape(once)
		if once == "%" {
			twice, err = "", nil
		}
		if err != nil || twice != key {
			t.Errorf("key %q: decoded twice %q (%v)", key, twice, err)
		}
		if k, ok := seen[got]; ok {
			t.Errorf("keys %q and %q both give %q", k, key, got)
		}
		seen[got] = key
	}
}

// The table of placeholders in docs/flags.md is PlaceholderTable: change
// the one, and this test says to change the other.
func TestDocsPlaceholders(t *testing.T) {
	b, err := os.ReadFile("../docs/flags.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Placeholders\n")
	if i < 0 {
		t.Fatal("docs/flags.md: no ## Placeholders")
	}
	s = s[i+1:]
	if j := strings.Index(s, "\n#"); j >= 0 {
		s = s[:j]
	}
	var table strings.Builder
	for l := range strings.Lines(s) {
		if strings.HasPrefix(l, "|") {
			table.WriteString(l)
		}
	}
	if got, want := table.String(), PlaceholderMarkdown(); got != want {
		t.Errorf("docs/flags.md's placeholders differ from PlaceholderTable (sinks/template.go); the table should read:\n%s", want)
	}
}
