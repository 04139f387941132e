package e2e

// End-to-end tests of batchpipe's manners: exit statuses, secrets,
// per-batch names, the status line and the messages people read.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

const helpHint = "Run 'batchpipe --help' for usage."

// Exit 2 is for mistakes in the command, with the --help hint only for
// the command line itself; a dependency missing at start is exit 69.
func TestExitStatusSeparatesUsageFromOutage(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	k := newKafka(t, 1)
	nosuch := k.name("nosuch")
	dir := t.TempDir()

	for _, tc := range []struct {
		name string
		args []string
		code int
		hint bool
		want string
	}{
		{"unknown flag", []string{"--max-recrods", "5", "file", "-"}, 2, true, "unknown flag"},
		{"bad value", []string{"-n", "0", "file", "-"}, 2, true, "--max-records"},
		{"directory as output", []string{"file", dir}, 2, false, dir},
		{"metrics port taken", []string{"--metrics-addr", taken.Addr().String(), "file", os.DevNull}, 69, false, "address already in use"},
		{"brokers unreachable", []string{"--kafka-brokers", closedAddr, "--topic", "t", "--kafka-timeout", "1s", "file", "-"}, 69, false, "connect to " + closedAddr},
		{"topic missing", []string{"--kafka-brokers", k.addr, "--topic", nosuch, "--until-end", "file", "-"}, 69, false, `"` + nosuch + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, nil, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want %d saying %q; stderr:\n%s", r.code, tc.code, tc.want, r.stderr)
			}
			if got := strings.Contains(r.stderr, helpHint); got != tc.hint {
				t.Errorf("--help hint shown: %v, want %v; stderr:\n%s", got, tc.hint, r.stderr)
			}
		})
	}
}

// leaks returns the first run of 6 bytes of secret found in out, or "".
func leaks(out, secret string) string {
	for i := 0; i+6 <= len(secret); i++ {
		if strings.Contains(out, secret[i:i+6]) {
			return secret[i : i+6]
		}
	}
	return ""
}

// A server that echoes everything it was sent, whole, cut or in part, in
// its error pages: no part of a header value, of the URL's user info, path
// or query appears in what batchpipe prints or writes, at any verbosity.
func TestHTTPEchoedSecretsNeverShown(t *testing.T) {
	const (
		token = "tok3f9aK2mQ8xZpL0vB7nR4wT1yE6uH5cJ9dG2sF8aXq" // 44 bytes
		hook  = "hookQ7wE2rT9yU4iO1pA6sD3fG8hJ5kL"
		key   = "keyZ2xC7vB4nM9qW1eR6tY3uI8oP5aS"
		pass  = "passN4bV9cX2zL7kJ1hG6fD3sA8"
	)
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		var page strings.Builder
		switch strings.TrimSpace(string(body)) {
		case "bare": // the token alone, without "Bearer "
			fmt.Fprintf(&page, "invalid token %s\n", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		case "uri": // the path and query
			fmt.Fprintf(&page, "no route for %s\n", r.RequestURI)
		case "cut": // the token straddles the 512 bytes quoted
			page.WriteString(strings.Repeat(".", 512-30))
			page.WriteString(r.Header.Get("Authorization")[len("Bearer "):])
			page.WriteString(strings.Repeat(".", 100))
		case "prefix": // the server itself shows the start of the token
			fmt.Fprintf(&page, "unknown key %s… (user %s)\n", token[:10], r.Header.Get("X-Pass")[:9])
		case "all":
			fmt.Fprintf(&page, "%s %s\n%v\n", r.Method, r.RequestURI, r.Header)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, page.String())
		return 400
	})
	url := strings.Replace(srv.URL, "http://", "http://user:"+pass+"@", 1) + "/hooks/" + hook + "?api_key=" + key
	dir := t.TempDir()
	for _, body := range []string{"bare", "uri", "cut", "prefix", "all"} {
		for _, flags := range [][]string{{}, {"-v"}, {"-v", "--log-format", "json"}} {
			stats := filepath.Join(dir, "stats.json")
			args := append(append([]string{}, flags...), "--stats-file", stats, "--dead-letter", filepath.Join(dir, "dl"),
				"http", "-H", "Authorization: Bearer "+token, "-H", "X-Pass: "+pass, url)
			r := run(t, strings.NewReader(body+"\n"), args...)
			if r.code != 3 || !strings.Contains(r.stderr, "400 Bad Request") {
				t.Fatalf("%s %q: exit %d, want 3 and the 400; stderr:\n%s", body, flags, r.code, r.stderr)
			}
			out := r.stdout + r.stderr + readFile(t, stats)
			for _, secret := range []string{token, hook, key, pass} {
				if part := leaks(out, secret); part != "" {
					t.Errorf("%s %q: output shows %q of a secret:\n%s", body, flags, part, out)
				}
			}
		}
	}
}

// A per-batch template that cannot name each batch of a run apart is
// refused before anything is read; {run} keeps runs apart, so a recipe
// pasted twice never collides, and sorts by start time.
func TestPerBatchNamesAreUnique(t *testing.T) {
	dir := t.TempDir()
	for _, tmpl := range []string{"out.log", "{date}.log", "{time}.log", "{run}.log", "{topic}-{seq}.log"} {
		r := run(t, strings.NewReader("a\nb\nc\n"), "-n", "1", "file", "--per-batch", filepath.Join(dir, tmpl))
		if r.code != 2 || strings.Contains(r.stderr, " read in ") {
			t.Errorf("%s: exit %d, want 2 before reading; stderr:\n%s", tmpl, r.code, r.stderr)
		}
		if files, _ := os.ReadDir(dir); len(files) > 0 {
			t.Fatalf("%s: wrote %d files", tmpl, len(files))
		}
	}
	// The README's recipe, twice in a row.
	tmpl := filepath.Join(dir, "out/{date}/{run}-{seq}.ndjson")
	var first []string
	for i := range 2 {
		r := run(t, strings.NewReader("{}\n{}\n{}\n"), "-n", "2", "file", "--per-batch", tmpl)
		if r.code != 0 {
			t.Fatalf("run %d: exit %d; stderr:\n%s", i+1, r.code, r.stderr)
		}
		names, _ := filepath.Glob(filepath.Join(dir, "out", "*", "*.ndjson")) // sorted
		if len(names) != 2*(i+1) {
			t.Fatalf("run %d: %d files, want %d: %q", i+1, len(names), 2*(i+1), names)
		}
		if i == 0 {
			first = names
			continue
		}
		// The second run's names sort after the first's.
		if names[0] != first[0] || names[1] != first[1] {
			t.Errorf("runs do not sort in the order they ran: first %q, then %q", first, names)
		}
	}
}

// screen plays bytes written to a terminal and returns its finished lines:
// '\r' goes back to the start of the line, ESC [ K erases to its end, and
// other escape sequences (colour) are skipped.
func screen(raw string) []string {
	var lines []string
	var cur []rune
	col := 0
	rs := []rune(raw)
	for i := 0; i < len(rs); i++ {
		switch c := rs[i]; {
		case c == '\r':
			col = 0
		case c == '\n':
			lines = append(lines, string(cur))
			cur, col = nil, 0
		case c == 0x1b && i+1 < len(rs) && rs[i+1] == '[':
			j := i + 2
			for j < len(rs) && (rs[j] < '@' || rs[j] > '~') {
				j++
			}
			if j < len(rs) && rs[j] == 'K' {
				cur = cur[:col]
			}
			i = j
		default:
			if col < len(cur) {
				cur[col] = c
			} else {
				cur = append(cur, c)
			}
			col++
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

// onTerminal runs batchpipe with stdin as input, its stderr (and stdout,
// unless given) a pseudo-terminal, and returns what the terminal got.
func onTerminal(t *testing.T, stdin string, stdout io.Writer, env []string, args ...string) string {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), env...)
	c.Stdin = strings.NewReader(stdin)
	c.Stderr = tty
	c.Stdout = tty
	if stdout != nil {
		c.Stdout = stdout
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var raw bytes.Buffer
	io.Copy(&raw, ptmx) // until EIO: every holder of the terminal is gone
	if err := c.Wait(); err != nil {
		t.Fatalf("%v: %v; terminal:\n%q", args, err, raw.String())
	}
	keepOutput(raw.String())
	return raw.String()
}

// The README's first recipe with a slower command, in a terminal: each
// line the command prints appears whole, on a line of its own, with the
// status line drawn (stdout being that terminal, it is erased around the
// output, and drawn again once the output pauses) or not.
func TestStatusLineNeverMixesWithOutput(t *testing.T) {
	recipe := []string{"-n", "3", "exec", "--", "sh", "-c", "sleep 0.25; wc -l"}
	for _, flags := range [][]string{nil, {"--progress", "always"}, {"--progress", "never"}} {
		raw := onTerminal(t, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", nil, []string{"TERM=xterm", "NO_COLOR=1"}, append(flags, recipe...)...)
		lines := screen(raw)
		var counts []string
		for _, l := range lines {
			if strings.HasPrefix(l, "batchpipe: ") {
				continue
			}
			counts = append(counts, l)
		}
		if strings.Join(counts, ",") != "3,3,3,1" {
			t.Errorf("%q: the command's lines are not whole on lines of their own: %q\nraw: %q", flags, lines, raw)
		}
		if drawn := strings.Contains(raw, "in flight"); flags != nil && drawn != (flags[1] == "always") {
			t.Errorf("%q: status line drawn: %v; raw: %q", flags, drawn, raw)
		}
	}
}

// TERM=dumb gets no status line, nor escape codes with --progress always;
// -q gets no status line nor metrics address. Stdout is not the terminal.
func TestStatusLineDumbAndQuiet(t *testing.T) {
	input := strings.Repeat("x\n", 20)
	args := []string{"-n", "5", "exec", "--", "sh", "-c", "sleep 0.2; cat >/dev/null"}
	raw := onTerminal(t, input, io.Discard, []string{"TERM=dumb"}, args...)
	if strings.Contains(raw, "\x1b") || strings.Contains(raw, "in flight") {
		t.Errorf("TERM=dumb: want no status line: %q", raw)
	}
	raw = onTerminal(t, input, io.Discard, []string{"TERM=dumb"}, append([]string{"--progress", "always"}, args...)...)
	if strings.Contains(raw, "\x1b") || !strings.Contains(raw, "in flight") {
		t.Errorf("TERM=dumb, --progress always: want the status line without escape codes: %q", raw)
	}
	raw = onTerminal(t, input, io.Discard, []string{"TERM=xterm"}, append([]string{"-q", "--metrics-addr", "127.0.0.1:0"}, args...)...)
	if raw != "" {
		t.Errorf("-q: the terminal got %q", raw)
	}
}

// --stats-file is checked at start, and a run that exits 2 leaves no
// earlier run's report claiming exit status 0.
func TestStatsFileAtStart(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r := run(t, strings.NewReader("a\n"), "--stats-file", filepath.Join(dir, "no", "such", "stats.json"), "file", out)
	if r.code != 2 || !strings.Contains(r.stderr, "--stats-file") || strings.Contains(r.stderr, " read in ") {
		t.Errorf("unwritable stats file: exit %d, want 2 before reading; stderr:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the run went ahead")
	}
	stats := filepath.Join(dir, "stats.json")
	if r := run(t, strings.NewReader("a\n"), "--stats-file", stats, "file", out); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, args := range [][]string{{"file", dir}, {"-n", "0", "file", out}} {
		r := run(t, strings.NewReader("a\n"), append([]string{"--stats-file", stats}, args...)...)
		var rep struct {
			Running    bool   `json:"running"`
			ExitStatus *int   `json:"exit_status"`
			Error      string `json:"error"`
		}
		if err := json.Unmarshal([]byte(readFile(t, stats)), &rep); err != nil {
			t.Fatal(err)
		}
		if r.code != 2 || rep.Running || rep.ExitStatus == nil || *rep.ExitStatus != 2 || rep.Error == "" {
			t.Errorf("%q: exit %d; the stats file says %+v", args, r.code, rep)
		}
	}
}

// --log-format json gives the summary and the final error as JSON too,
// durations with their unit; the summary counts a batch delivered in part;
// positions read without nested parentheses.
func TestJSONLogsAndSummaryCounts(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, strings.NewReader("1\n2\nx\n"), "-v", "--log-format", "json", "file", "--format", "ndjson", out)
	if r.code != 1 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	var summary, failure, batch map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(r.stderr), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		switch v["msg"] {
		case "summary":
			summary = v
		case "batch":
			batch = v
		}
		if v["level"] == "ERROR" {
			failure = v
		}
	}
	if summary == nil || summary["records_delivered"] != 2.0 || summary["batches_partly_delivered"] != 1.0 || summary["records_undelivered"] != 1.0 {
		t.Errorf("summary: %v", summary)
	}
	if failure == nil || !strings.Contains(fmt.Sprint(failure["error"]), "record 3 at byte offset 4 is not valid JSON") {
		t.Errorf("final error: %v", failure)
	}
	for _, d := range []any{batch["duration"], summary["elapsed"]} {
		if s, ok := d.(string); !ok || !strings.HasSuffix(s, "s") {
			t.Errorf("duration without a unit: %v", d)
		}
	}

	r = run(t, strings.NewReader("1\n2\nx\n"), "file", "--format", "ndjson", out)
	if !strings.Contains(r.stderr, "2 delivered in 1 batch (1 in part;") || strings.Contains(r.stderr, "))") ||
		strings.Contains(r.stderr, " 1 records") {
		t.Errorf("text summary:\n%s", r.stderr)
	}
}

// Settings that made no sense were taken without a word; sizes people
// write were refused; errors quoted Go's internals.
func TestSettingsRefusedOrTaken(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	input := filepath.Join(dir, "input")
	if err := os.WriteFile(input, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backoff", "10s", "--max-backoff", "1s", "file", out}, "--backoff 10s is longer than --max-backoff 1s"},
		{[]string{"-d", "", "file", out}, "-d takes a single byte"},
		{[]string{"-b", "999999999G", "file", out}, "is more than 4GiB"},
		{[]string{"file", "--per-batch", filepath.Join(dir, "{topic}-{seq}"), out}, ""}, // PATH and --per-batch: already refused
		{[]string{"file", "--per-batch", filepath.Join(dir, "{topic}-{seq}")}, "{topic} and {partition} are those of Kafka records"},
		{[]string{"--dead-letter", out, "file", out}, "is the output too"},
		{[]string{"--dead-letter", "./" + filepath.Base(out), "file", out}, ""},
		{[]string{"--topic", "t", "--kafka-brokers", "127.0.0.1:1", "file", out}, "data waits on stdin"},
		{[]string{"-n", "abc", "file", out}, `invalid argument "abc" for "-n, --max-records" flag: not a whole number`},
		{[]string{"-t", "5", "file", out}, "a duration needs a unit"},
	} {
		f, err := os.Open(input)
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command(bin, tc.args...)
		c.Dir = dir
		c.Stdin = f
		b, _ := c.CombinedOutput()
		f.Close()
		keepOutput(string(b))
		if c.ProcessState.ExitCode() != 2 || !strings.Contains(string(b), tc.want) || strings.Contains(string(b), "strconv") {
			t.Errorf("%q: exit %d, want 2 and %q:\n%s", tc.args, c.ProcessState.ExitCode(), tc.want, b)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%q: the run went ahead", tc.args)
			os.Remove(out)
		}
	}
	// Sizes as people write them.
	for _, size := range []string{"1m", "64kb", "1.5M", "2MB"} {
		if r := run(t, strings.NewReader("a\n"), "-b", size, "file", os.DevNull); r.code != 0 {
			t.Errorf("-b %s: exit %d: %s", size, r.code, r.stderr)
		}
	}
}

// A server that never answers gets a word within seconds, not silence
// until --timeout (30s).
func TestHTTPSilentServerIsReported(t *testing.T) {
	srv := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		<-r.Context().Done()
		return 0
	})
	began := time.Now()
	p := start(t, "http", srv.URL+"/ingest")
	p.write("a\n")
	p.stdin.Close()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	said := ""
	for said == "" {
		p.mu.Lock()
		lines, next := p.lines, p.newLn
		p.mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, "no response after") {
				said = l
			}
		}
		if said != "" {
			break
		}
		select {
		case <-next:
			continue
		case <-deadline.C:
			t.Errorf("nothing said about a silent server in 15s; stderr:\n%s", p.stderr())
		}
		break
	}
	if said != "" && (time.Since(began) > 15*time.Second || !strings.Contains(said, "--timeout 30s")) {
		t.Errorf("after %v: %q", time.Since(began), said)
	}
	p.signal(syscall.SIGTERM)
	p.waitFor("again to abandon") // else the kernel may merge the two
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 1 {
		t.Errorf("exit %d after two signals", code)
	}
}

// With --format ndjson, blank lines and a byte order mark do not fail the
// run, as they do not trouble jq or ClickHouse: a blank line is passed on
// as an empty line, counted as delivered, and the mark is left out.
func TestNDJSONBlankLinesAndBOM(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, strings.NewReader("\xEF\xBB\xBF{\"a\":1}\n\n{\"b\":2}\n  \n"), "file", "--format", "ndjson", out)
	if r.code != 0 || !strings.Contains(r.stderr, "4 delivered") {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if got := readFile(t, out); got != "{\"a\":1}\n\n{\"b\":2}\n  \n" {
		t.Errorf("wrote %q", got)
	}
}

// Error texts name things as people wrote them, once.
func TestErrorTexts(t *testing.T) {
	r := run(t, strings.NewReader("x\n"), "http", "localhost:18080/ok")
	if r.code != 2 || !strings.Contains(r.stderr, "give http://localhost:18080/…") || strings.Contains(r.stderr, ":///") {
		t.Errorf("URL without a scheme: exit %d:\n%s", r.code, r.stderr)
	}
	r = run(t, strings.NewReader("x\n"), "--retries", "0", "file", "/dev/full")
	if r.code != 1 || !strings.Contains(r.stderr, "file sink: write /dev/full: no space left on device") {
		t.Errorf("/dev/full: exit %d:\n%s", r.code, r.stderr)
	}
}

// The README's recipes that run here, pasted twice in a row: the second
// run fares as the first. Each is checked to be in the README word for
// word; only paths and URLs are swapped for local ones.
func TestREADMERecipesTwice(t *testing.T) {
	readme := readDocs(t)
	dir := t.TempDir()
	binDir := filepath.Dir(bin)
	if filepath.Base(bin) != "batchpipe" {
		// A build named otherwise: give the recipes its name.
		binDir = t.TempDir()
		if err := os.Symlink(bin, filepath.Join(binDir, "batchpipe")); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, data string, mode os.FileMode) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("testdata/sample.ndjson", readFile(t, repoPath("testdata/sample.ndjson")), 0o644)
	write("upload.sh", "#!/bin/sh\ncat >/dev/null\n", 0o755)
	write("items.txt", lines(1000, "item %d"), 0o644)
	var rows strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&rows, `{"ts":1763892002,"seq":%d,"user":"someone","method":"GET","path":"/search?q=shoes","status":200,"ms":39}`+"\n", i)
	}
	write("logs.ndjson", rows.String(), 0o644)
	var mu sync.Mutex
	var inserts []int
	ch := newHTTPSink(t, nil, func(w http.ResponseWriter, r *http.Request, body []byte) int {
		mu.Lock()
		inserts = append(inserts, bytes.Count(body, []byte("\n")))
		mu.Unlock()
		return 200
	})
	for _, d := range []string{"spool", "lib", "data", "log"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	write("log/events.ndjson", readFile(t, repoPath("testdata/sample.ndjson")), 0o644)

	for _, rc := range []struct {
		recipe string
		local  *strings.Replacer
		setup  func()
		check  func(stdout, stderr string)
	}{
		{recipe: "seq 10 | batchpipe -n 3 exec -- wc -l", check: func(out, _ string) {
			if strings.Fields(out) == nil || strings.Join(strings.Fields(out), ",") != "3,3,3,1" {
				t.Errorf("wc -l said %q", out)
			}
		}},
		{recipe: "batchpipe -n 100 -j 4 --retries 5 --dead-letter failed.txt exec -- ./upload.sh < items.txt"},
		{recipe: "batchpipe -n 50 exec --args -- rm -f < files.txt", setup: func() {
			var names []string
			for i := range 120 {
				name := fmt.Sprintf("f%d", i)
				write(name, "", 0o644)
				names = append(names, name)
			}
			write("files.txt", strings.Join(names, "\n")+"\n", 0o644)
		}, check: func(_, _ string) {
			if _, err := os.Stat(filepath.Join(dir, "f7")); err == nil {
				t.Error("rm -f left f7")
			}
		}},
		{recipe: "batchpipe -n 1000 file --per-batch 'out/{date}/{run}-{seq}.ndjson' < testdata/sample.ndjson"},
		{recipe: "find . -print0 | batchpipe -0 -n 100 file -", check: func(out, _ string) {
			if !strings.Contains(out, "./items.txt\x00") {
				t.Errorf("find's names did not come out: %.100q", out)
			}
		}},
		{
			recipe: "batchpipe -n 10000 -b 32M -t 1s --dead-letter bad-rows.ndjson \\\n  http --format ndjson 'http://localhost:8123/?query=INSERT%20INTO%20logs%20FORMAT%20JSONEachRow' < logs.ndjson",
			local:  strings.NewReplacer("http://localhost:8123/", ch.URL+"/"),
			setup: func() {
				mu.Lock()
				inserts = nil
				mu.Unlock()
			},
			check: func(_, stderr string) {
				mu.Lock()
				defer mu.Unlock()
				sum := 0
				for _, n := range inserts {
					sum += n
				}
				// -n cuts the batches, never -b; the 1s linger may, on a
				// machine so loaded that reading 10,000 rows takes longer.
				if sum != 20000 || inserts[0] != 10000 && !strings.Contains(stderr, " linger") ||
					strings.Contains(stderr, " bytes") {
					t.Errorf("rows per INSERT: %v, want 10000 each; stderr:\n%s", inserts, stderr)
				}
			},
		},
		{
			recipe: "batchpipe -q -n 5000 --retries 5 --dead-letter /var/spool/batchpipe/failed.txt \\\n" +
				"    --stats-file /var/lib/batchpipe/stats.json file --per-batch '/data/{date}/{run}-{seq}.ndjson' \\\n" +
				"    < /var/log/app/events.ndjson || echo \"batchpipe exit $?\" | mail -s batchpipe ops",
			local: strings.NewReplacer("/var/spool/batchpipe/", dir+"/spool/", "/var/lib/batchpipe/", dir+"/lib/",
				"/data/", dir+"/data/", "/var/log/app/", dir+"/log/", "mail -s batchpipe ops", "cat >>alerts"),
			check: func(_, _ string) {
				if _, err := os.Stat(filepath.Join(dir, "alerts")); err == nil {
					t.Errorf("the cron job alerted: %s", readFile(t, filepath.Join(dir, "alerts")))
				}
			},
		},
	} {
		if !strings.Contains(readme, rc.recipe) {
			t.Errorf("not in README.md or docs/: %s", rc.recipe)
			continue
		}
		cmd := rc.recipe
		if rc.local != nil {
			cmd = rc.local.Replace(cmd)
		}
		for i := range 2 {
			if rc.setup != nil {
				rc.setup()
			}
			c := exec.Command("sh", "-c", cmd)
			c.Dir = dir
			c.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
			var stdout, stderr bytes.Buffer
			c.Stdout, c.Stderr = &stdout, &stderr
			err := c.Run()
			keepOutput(stdout.String(), stderr.String())
			if err != nil {
				t.Errorf("run %d of %s: %v; stderr:\n%s", i+1, cmd, err, stderr.String())
				continue
			}
			if rc.check != nil {
				rc.check(stdout.String(), stderr.String())
			}
		}
	}
}

// Commands get the run's ID as BATCHPIPE_RUN: one per run, sorting in the
// order runs started.
func TestExecGetsRunID(t *testing.T) {
	var ids []string
	for range 2 {
		r := run(t, strings.NewReader("1\n2\n3\n4\n"), "-n", "2", "exec", "--", "sh", "-c", "echo $BATCHPIPE_RUN")
		f := strings.Fields(r.stdout)
		if r.code != 0 || len(f) != 2 || f[0] != f[1] || f[0] == "" {
			t.Fatalf("exit %d, BATCHPIPE_RUN %q; stderr:\n%s", r.code, f, r.stderr)
		}
		ids = append(ids, f[0])
	}
	if ids[0] >= ids[1] {
		t.Errorf("the second run's ID %q does not sort after the first's %q", ids[1], ids[0])
	}
}
