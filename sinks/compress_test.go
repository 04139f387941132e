package sinks

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// decompress reads a whole gzip stream (all its members) or zstd stream
// (all its frames).
func decompress(t *testing.T, algo string, data []byte) []byte {
	t.Helper()
	var r io.Reader
	var err error
	if algo == "gzip" {
		r, err = gzip.NewReader(bytes.NewReader(data))
	} else {
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(data))
		if err == nil {
			defer d.Close()
		}
		r = d
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", algo, err)
	}
	return got
}

func TestFileAppendCompressedOneStream(t *testing.T) {
	for _, algo := range []string{"gzip", "zstd"} {
		t.Run(algo, func(t *testing.T) {
			c, _ := ParseCompression(algo)
			path := filepath.Join(t.TempDir(), "out")
			f, err := OpenFile(path, FileOptions{Compress: c})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, recs := range [][][]byte{lines("a", "b"), lines("c")} {
				if err := f.Deliver(context.Background(), batchOf(t, '\n', recs...)); err != nil {
					t.Fatal(err)
				}
			}
			data, _ := os.ReadFile(path)
			if got := decompress(t, algo, data); string(got) != "a\nb\nc\n" {
				t.Errorf("file decompresses to %q, want a\\nb\\nc\\n", got)
			}
		})
	}
}

func TestHTTPCompressZstd(t *testing.T) {
	var got []byte
	var enc string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		enc, got = r.Header.Get("Content-Encoding"), body
	})
	c, _ := ParseCompression("zstd")
	s := newHTTP(t, HTTPConfig{URL: srv.URL, Compress: c})
	if err := s.Deliver(context.Background(), batchOf(t, '\n', lines("x", "y")...)); err != nil {
		t.Fatal(err)
	}
	if enc != "zstd" || string(decompress(t, "zstd", got)) != "x\ny\n" {
		t.Errorf("Content-Encoding %q, body %q; want zstd of x\\ny\\n", enc, got)
	}
}

func TestCompressionDeterministic(t *testing.T) {
	body := bytes.Repeat([]byte("some line of a log\n"), 5000)
	for _, spec := range []string{"gzip", "gzip:9", "zstd", "zstd:19"} {
		c, err := ParseCompression(spec)
		if err != nil {
			t.Fatal(err)
		}
		a, err := c.Append(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := c.Append(nil, body)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two compressions of one body differ", spec)
		}
		algo, _, _ := strings.Cut(spec, ":")
		if got := decompress(t, algo, a); !bytes.Equal(got, body) {
			t.Errorf("%s: decompressed %d bytes, want the %d put in", spec, len(got), len(body))
		}
	}
	for _, bad := range []string{"lz4", "gzip:0", "zstd:23", "none:1", "gzip:x"} {
		if _, err := ParseCompression(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
