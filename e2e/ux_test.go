package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/golden/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestProgressOnTerminalOnly(t *testing.T) {
	// stderr is a pseudo-terminal: the status line is drawn, then replaced
	// by the summary.
	c := exec.Command(bin, "-n", "10", "-t", "1h", "file", os.DevNull)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	c.Stderr = tty
	c.Env = append(os.Environ(), "NO_COLOR=1")
	stdin, _ := c.StdinPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	stdin.Write([]byte(strings.Repeat("x\n", 25)))
	var screen bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(screen.String(), "read 25") {
		n, err := ptmx.Read(buf)
		if err != nil {
			t.Fatalf("no status line on the terminal: %q (%v)", screen.String(), err)
		}
		screen.Write(buf[:n])
	}
	stdin.Close()
	io.Copy(&screen, ptmx) // EIO once the child has exited
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	out := screen.String()
	if !strings.Contains(out, "delivered 20 in 2 batches") {
		t.Errorf("status line lacks the counts: %q", out)
	}
	// What the screen shows last: the line erased, then the summary.
	last := out[strings.LastIndex(out, "\x1b[K"):]
	if !strings.HasPrefix(last, "\x1b[Kbatchpipe: 25 records") || strings.Contains(last, "in flight") {
		t.Errorf("final screen is not the summary: %q", last)
	}
	if strings.Contains(out, "\x1b[3") {
		t.Errorf("colour despite NO_COLOR: %q", out)
	}

	// stderr is a pipe: no status line, just the summary.
	r := run(t, strings.NewReader(strings.Repeat("x\n", 25)), "-n", "10", "file", os.DevNull)
	if strings.Contains(r.stderr, "\r") || strings.Contains(r.stderr, "in flight") {
		t.Errorf("status line written to a pipe: %q", r.stderr)
	}
}

// readChunks passes on what a terminal's master side reads, until EIO:
// every holder of the terminal is gone.
func readChunks(ptmx io.Reader) <-chan []byte {
	chunks := make(chan []byte)
	go func() {
		defer close(chunks)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				chunks <- bytes.Clone(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	return chunks
}

// An http run at a terminal, stdout that terminal too, draws the status
// line: its batches never reach the terminal, so nothing can mix with it.
func TestProgressAtTerminalHTTP(t *testing.T) {
	var mu sync.Mutex
	var got bytes.Buffer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		io.Copy(&got, r.Body)
	}))
	defer srv.Close()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	c := exec.Command(bin, "-n", "10", "-t", "1h", "http", srv.URL)
	c.Stdout, c.Stderr = tty, tty
	c.Env = append(os.Environ(), "NO_COLOR=1", "TERM=xterm")
	stdin, _ := c.StdinPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	stdin.Write([]byte(strings.Repeat("x\n", 25)))
	chunks := readChunks(ptmx)
	var screen bytes.Buffer
	deadline := time.After(30 * time.Second) // a bound on failure, not a wait
	for !strings.Contains(screen.String(), "read 25") {
		select {
		case b, ok := <-chunks:
			if !ok {
				t.Fatalf("batchpipe ended without a status line: %q", screen.String())
			}
			screen.Write(b)
		case <-deadline:
			stdin.Close()
			c.Wait()
			for range chunks {
			}
			t.Fatalf("no status line on the terminal in 30s: %q", screen.String())
		}
	}
	stdin.Close()
	for b := range chunks {
		screen.Write(b)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("%v; terminal: %q", err, screen.String())
	}
	out := screen.String()
	if !strings.Contains(out, "delivered 20 in 2 batches") {
		t.Errorf("status line lacks the counts: %q", out)
	}
	last := out[strings.LastIndex(out, "\x1b[K"):]
	if !strings.HasPrefix(last, "\x1b[Kbatchpipe: 25 records") {
		t.Errorf("final screen is not the summary: %q", last)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.String() != strings.Repeat("x\n", 25) {
		t.Errorf("the server got %q", got.String())
	}
}

// Records typed at a terminal: a one-line hint says how to end them, and
// Ctrl-D does.
func TestTerminalInputHint(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	out := filepath.Join(t.TempDir(), "out")
	c := exec.Command(bin, "-n", "10", "file", out)
	c.Stdin, c.Stderr = tty, tty
	c.Env = append(os.Environ(), "TERM=dumb")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	chunks := readChunks(ptmx)
	var screen bytes.Buffer
	const hint = "batchpipe: reading records from the terminal (stdin): end them with Ctrl-D, or give input with < FILE or a pipe"
	deadline := time.After(30 * time.Second) // a bound on failure, not a wait
	for !strings.Contains(screen.String(), hint) {
		select {
		case b, ok := <-chunks:
			if !ok {
				t.Fatalf("batchpipe ended without the hint: %q", screen.String())
			}
			screen.Write(b)
		case <-deadline:
			c.Process.Kill()
			c.Wait()
			for range chunks {
			}
			t.Fatalf("no hint on the terminal in 30s: %q", screen.String())
		}
	}
	ptmx.Write([]byte("a\nb\n\x04"))
	for b := range chunks { // until EIO: batchpipe has exited
		screen.Write(b)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("%v; terminal: %q", err, screen.String())
	}
	if got := readFile(t, out); got != "a\nb\n" {
		t.Errorf("delivered %q, want the two lines typed; terminal: %q", got, screen.String())
	}
	if n := strings.Count(screen.String(), "reading records"); n != 1 {
		t.Errorf("the hint came %d times: %q", n, screen.String())
	}
}

// --kafka-brokers with nothing that reads or writes Kafka would read
// stdin instead: a usage error, naming what to add.
func TestKafkaBrokersWithoutTopic(t *testing.T) {
	r := run(t, strings.NewReader("a\n"), "--kafka-brokers", "localhost:9092", "file", os.DevNull)
	want := "batchpipe: --kafka-brokers is for Kafka, and nothing here reads or writes it: give --topic TOPIC to read it (or the kafka sink, or --dead-letter kafka:TOPIC)\n" + helpHint + "\n"
	if r.code != 2 || r.stderr != want {
		t.Errorf("exit %d, want 2 and %q; stderr:\n%s", r.code, want, r.stderr)
	}
}

// normalizeStats blanks the figures that vary from run to run.
func normalizeStats(s string) string {
	return regexp.MustCompile(`("(elapsed_seconds|records_per_second)": )[0-9.e+-]+`).ReplaceAllString(s, "${1}0")
}

func TestStatsFile(t *testing.T) {
	dir := t.TempDir()
	stats := filepath.Join(dir, "stats.json")
	out := filepath.Join(dir, "out")
	r := run(t, strings.NewReader("a\nb\nc\nd\ne\n"), "-n", "2", "--stats-file", stats, "file", out)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	got := readFile(t, stats)
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	golden(t, "stats.json", normalizeStats(got))
}

func TestStatsFileOnSIGUSR2(t *testing.T) {
	stats := filepath.Join(t.TempDir(), "stats.json")
	p := start(t, "-v", "-n", "100", "-t", "1h", "--stats-file", stats, "file", os.DevNull)
	p.write("a\nb\n")
	p.waitFor("total=2")
	p.signal(syscall.SIGUSR2)
	p.waitFor("stats file written")
	var v struct {
		Running  bool  `json:"running"`
		Read     int64 `json:"records_read"`
		InFlight int64 `json:"records_in_flight"`
	}
	if err := json.Unmarshal([]byte(readFile(t, stats)), &v); err != nil {
		t.Fatal(err)
	}
	if !v.Running || v.Read != 2 {
		t.Fatalf("stats while running: %+v", v)
	}
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	p := start(t, "-v", "-n", "2", "-t", "1h", "--metrics-addr", "127.0.0.1:0", "file", os.DevNull)
	line := p.waitFor("metrics at ")
	url := line[strings.Index(line, "http://"):]
	p.write("a\nb\nc\n")
	p.waitFor("total=3")
	p.waitFor("seq=1") // logged once the batch's metrics are recorded
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("not the Prometheus text format: %v", err)
	}
	value := func(name string) float64 {
		f, ok := families[name]
		if !ok {
			t.Fatalf("no %s", name)
		}
		m := f.GetMetric()[0]
		for _, l := range m.GetLabel() {
			if l.GetName() == "sink" && l.GetValue() != "file" {
				t.Errorf("%s: sink label %q", name, l.GetValue())
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return float64(m.GetHistogram().GetSampleCount())
	}
	for name, want := range map[string]float64{
		"batchpipe_records_read_total":      3,
		"batchpipe_records_delivered_total": 2,
		"batchpipe_records_in_flight":       0,
		"batchpipe_batch_records":           1,
		"batchpipe_batch_duration_seconds":  1,
		"batchpipe_batches_settled_total":   1,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for name := range families {
		if !model.LegacyValidation.IsValidMetricName(name) || !strings.HasPrefix(name, "batchpipe_") {
			t.Errorf("metric %q", name)
		}
	}
	p.stdin.Close()
	p.wait()
}

func TestEnvironmentSetsFlags(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	c := exec.Command(bin, "file", out)
	c.Env = append(os.Environ(), "BATCHPIPE_MAX_RECORDS=2", "BATCHPIPE_QUIET=true")
	c.Stdin = strings.NewReader("a\nb\nc\n")
	var errb bytes.Buffer
	c.Stderr = &errb
	if err := c.Run(); err != nil || errb.Len() != 0 {
		t.Fatalf("%v: %s", err, errb.String())
	}
	// Flags win over the environment.
	c = exec.Command(bin, "-n", "3", "--stats-file", out+".json", "file", out)
	c.Env = append(os.Environ(), "BATCHPIPE_MAX_RECORDS=2")
	c.Stdin = strings.NewReader("a\nb\nc\n")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if s := readFile(t, out+".json"); !strings.Contains(s, `"batches": 1,`) {
		t.Fatalf("-n 3 lost to the environment: %s", s)
	}
	c = exec.Command(bin, "file", out)
	c.Env = append(os.Environ(), "BATCHPIPE_MAX_RECORDS=many")
	b, _ := c.CombinedOutput()
	if c.ProcessState.ExitCode() != 2 || !strings.Contains(string(b), `BATCHPIPE_MAX_RECORDS="many"`) {
		t.Fatalf("exit %d: %s", c.ProcessState.ExitCode(), b)
	}
}

func TestUsageMessages(t *testing.T) {
	for name, args := range map[string][]string{
		"typo.txt":               {"--max-recrods", "5", "file", "-"},
		"unknown-sink.txt":       {"flie", "-"},
		"no-sink.txt":            {},
		"zero-records.txt":       {"-n", "0", "file", "-"},
		"huge-parallel.txt":      {"-j", "100000", "file", "-"},
		"bad-size.txt":           {"-b", "-1", "file", "-"},
		"two-delims.txt":         {"-0", "-d", ",", "file", "-"},
		"per-batch-and-path.txt": {"file", "--per-batch", "{seq}", "out"},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, strings.NewReader(""), args...)
			if r.code != 2 {
				t.Errorf("exit %d", r.code)
			}
			golden(t, filepath.Join("usage", name), r.stderr)
		})
	}
}

func TestCompletionAndVersion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := run(t, nil, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, "batchpipe") {
			t.Errorf("completion %s: exit %d", shell, r.code)
		}
	}
	for _, v := range []string{"--version", "version"} {
		if r := run(t, nil, v); r.code != 0 || !strings.HasPrefix(r.stdout, "batchpipe version ") {
			t.Errorf("%s: %q", v, r.stdout)
		}
	}
}
