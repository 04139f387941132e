package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batchpipe/batchpipe/internal/testcert"
)

// shellWords splits a command line as sh would, for the quoting and $VAR
// expansion the examples use.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == ' ':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				t.Fatalf("unclosed ' in %q", line)
			}
			w.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				t.Fatalf("unclosed \" in %q", line)
			}
			w.WriteString(os.ExpandEnv(line[i+1 : i+1+j]))
			i += j + 1
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// TestHTTPExamplesParse runs every example of the http help with empty
// input: flags, URL and files must all be accepted. File names are
// replaced by real ones; nothing is sent, as there is no record.
func TestHTTPExamplesParse(t *testing.T) {
	certs := testcert.New(t)
	dir := t.TempDir()
	t.Setenv("TOKEN", "example-token")
	files := map[string]string{
		"ca.pem":         certs.CAFile,
		"client.pem":     certs.ClientCert,
		"client-key.pem": certs.ClientKey,
	}
	exs := examples(t, httpExamples)
	for _, ex := range exs {
		args := ex.args
		for i, a := range args {
			if f, ok := files[a]; ok {
				args[i] = f
			}
			if i > 0 && args[i-1] == "--dead-letter" {
				args[i] = filepath.Join(dir, a)
			}
		}
		var out, errb bytes.Buffer
		code := Main(args, Streams{In: strings.NewReader(""), Out: &out, Err: &errb}, nil)
		if code != exitOK {
			t.Errorf("example %q: exit %d: %s", ex.line, code, errb.String())
		}
	}
	if n := len(exs); n < 3 || n > 5 {
		t.Errorf("%d examples, want 3 to 5", n)
	}
}

func TestHTTPUsageErrors(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"http"}, "http: give one URL"},
		{[]string{"http", "http://a/", "http://b/"}, "http: give one URL"},
		{[]string{"http", "-H", "Authorization Bearer SECRET-1", "http://h/"}, "header 1 (-H): want 'Name: value'"},
		{[]string{"http", "-H", "A: b", "-H", "Bad Name: SECRET-1", "http://h/"}, `header 2 (-H): "Bad Name" is not a valid header name`},
		{[]string{"http", "ftp://u:SECRET-1@h/"}, "want an http:// or https:// URL"},
		{[]string{"http", "http://u:SECRET-1@h:port/"}, "bad URL"},
		{[]string{"http", "--timeout", "0s", "http://h/"}, "--timeout must be positive"},
		{[]string{"http", "--format", "csv", "http://h/"}, `unknown format "csv"`},
		{[]string{"http", "--cacert", certs.CAFile, "http://h/"}, "need an https:// URL"},
		{[]string{"http", "--cert", certs.ClientCert, "https://h/"}, "--cert and --key go together"},
		{[]string{"-j", "0", "http", "http://h/"}, "--parallel must be between"},
	} {
		var out, errb bytes.Buffer
		code := Main(tc.args, Streams{In: strings.NewReader("x\n"), Out: &out, Err: &errb}, nil)
		msg := errb.String()
		if code != exitUsage || !strings.Contains(msg, tc.want) {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and %q", tc.args, code, msg, tc.want)
		}
		if strings.Contains(msg, "SECRET") {
			t.Errorf("%q: stderr shows the secret:\n%s", tc.args, msg)
		}
	}
}
