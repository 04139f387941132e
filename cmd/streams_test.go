package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStreamsStatusLine(t *testing.T) {
	t.Setenv("TERM", "xterm")
	person := Streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}, ErrIsTerminal: true}
	script := Streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}
	for _, c := range []struct {
		s     Streams
		mode  string
		quiet bool
		want  bool
	}{
		{person, "auto", false, true},
		{person, "auto", true, false},
		{person, "never", false, false},
		{script, "auto", false, false},
		{script, "always", true, true},
	} {
		if got := c.s.statusLine(c.mode, c.quiet); got != c.want {
			t.Errorf("terminal %v, --progress %s, quiet %v: status line %v, want %v",
				c.s.ErrIsTerminal, c.mode, c.quiet, got, c.want)
		}
	}
	t.Setenv("TERM", "dumb")
	if person.statusLine("auto", false) || person.color() {
		t.Error("a status line or colour on a dumb terminal")
	}
}

func TestStreamsInputWaiting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(path, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !(Streams{In: f}).inputWaiting() {
		t.Error("a file with bytes left is not waiting")
	}
	if _, err := f.Seek(0, 2); err != nil {
		t.Fatal(err)
	}
	if (Streams{In: f}).inputWaiting() {
		t.Error("a file read to its end is waiting")
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if (Streams{In: r}).inputWaiting() {
		t.Error("an empty pipe is waiting")
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if !(Streams{In: r}).inputWaiting() {
		t.Error("a pipe with a byte in it is not waiting")
	}
	if (Streams{In: strings.NewReader("x")}).inputWaiting() {
		t.Error("a reader that is not a file is waiting")
	}
}
