package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestSIGTERMFlushesOpenBatch(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := start(t, "-v", "-n", "100", "-t", "1h", "file", out)
	p.write("a\nb\nc\n")
	p.waitFor("total=3")
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Fatalf("exit %d, want 143; stderr:\n%s", code, p.stderr())
	}
	if got := readFile(t, out); got != "a\nb\nc\n" {
		t.Fatalf("file holds %q", got)
	}
	if !strings.Contains(p.stderr(), "reason=signal") {
		t.Errorf("batch not flushed for the signal:\n%s", p.stderr())
	}
}
