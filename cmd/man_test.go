package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The man pages in docs/man are those the commands generate: change a
// command's help, and this test says to run make man.
func TestManPagesUpToDate(t *testing.T) {
	t.Setenv("COLUMNS", "80") // as make man runs it
	dir := t.TempDir()
	if err := WriteManPages(dir); err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	have, _ := filepath.Glob("../docs/man/*.1")
	for i := range want {
		want[i] = filepath.Base(want[i])
	}
	for i := range have {
		have[i] = filepath.Base(have[i])
	}
	if !slices.Equal(want, have) {
		t.Fatalf("docs/man holds %q, the commands make %q: run make man", have, want)
	}
	for _, name := range want {
		w, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		h, err := os.ReadFile(filepath.Join("../docs/man", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w, h) {
			t.Errorf("docs/man/%s is stale: run make man", name)
		}
	}
}

// A page is the same whenever it is generated: no date, no environment.
func TestManPagesDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := WriteManPages(a); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BATCHPIPE_MAX_RECORDS", "7")
	t.Setenv("BATCHPIPE_KAFKA_BROKERS", "elsewhere:9092")
	t.Setenv("SOURCE_DATE_EPOCH", "86400")
	if err := WriteManPages(b); err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(a, "*.1"))
	for _, p := range pages {
		x, _ := os.ReadFile(p)
		y, _ := os.ReadFile(filepath.Join(b, filepath.Base(p)))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs from one generation to the next", filepath.Base(p))
		}
		if bytes.Contains(x, []byte("Auto generated")) {
			t.Errorf("%s carries cobra's dated HISTORY", filepath.Base(p))
		}
	}
}
