package e2e

// The shell blocks of README.md, CONTRIBUTING.md and docs/*.md. Each is
// marked, on the line before it, either
//
//	<!-- recipe: NAME -->            run twice by a test, its result checked
//	<!-- illustrative: REASON -->    not run: it needs AWS, a remote host, cron…
//
// and a block of another language that a recipe needs as a file is marked
// <!-- file: NAME -->. TestRecipeBlocksMarked holds every block to that,
// and TestRecipes runs the recipes.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batchpipe/batchpipe/kafka/kafkatest"
)

// docFiles are the pages whose blocks are checked.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(repoPath("docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	return append([]string{repoPath("README.md"), repoPath("CONTRIBUTING.md")}, pages...)
}

// readDocs returns every page of docFiles, one after another.
func readDocs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, f := range docFiles(t) {
		b.WriteString(readFile(t, f))
		b.WriteString("\n")
	}
	return b.String()
}

// A docBlock is a fenced block of a page and the marker before it.
type docBlock struct {
	file string
	line int    // of the opening fence
	lang string // sh, sql, json…
	mark string // recipe, illustrative, file, or "" for none
	arg  string // the recipe's or file's name, or the reason
	text string // the block's lines, their indentation removed
}

var (
	fenceRE  = regexp.MustCompile("^( *)```([a-z]*) *$")
	markerRE = regexp.MustCompile(`^ *<!-- (recipe|illustrative|file): (.+?) -->$`)
)

// shellLangs are the fences that hold commands to run.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true}

// docBlocks parses the fenced blocks of every page.
func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	var blocks []docBlock
	for _, f := range docFiles(t) {
		ls := strings.Split(readFile(t, f), "\n")
		for i := 0; i < len(ls); i++ {
			m := fenceRE.FindStringSubmatch(ls[i])
			if m == nil {
				continue
			}
			b := docBlock{file: f, line: i + 1, lang: m[2]}
			if i > 0 {
				if mm := markerRE.FindStringSubmatch(ls[i-1]); mm != nil {
					b.mark, b.arg = mm[1], mm[2]
				}
			}
			var text []string
			for i++; i < len(ls) && strings.TrimSpace(ls[i]) != "```"; i++ {
				text = append(text, strings.TrimPrefix(ls[i], m[1]))
			}
			b.text = strings.Join(text, "\n") + "\n"
			blocks = append(blocks, b)
		}
	}
	return blocks
}

// recipesElsewhere are recipes that another test runs twice by their text,
// with local paths and URLs, and checks.
var recipesElsewhere = map[string]string{
	"exec-wc":         "TestREADMERecipesTwice",
	"args-rm":         "TestREADMERecipesTwice",
	"per-batch-files": "TestREADMERecipesTwice",
	"find-print0":     "TestREADMERecipesTwice",
	"clickhouse":      "TestREADMERecipesTwice",
	"s3-log":          "TestS3READMERecipesTwice",
	"s3-hourly":       "TestS3READMERecipesTwice",
	"s3-tenants":      "TestS3READMERecipesTwice",
	"s3-archive":      "TestS3READMERecipesTwice",
	"s3-clickhouse":   "TestS3ReadBackWithClickHouse",
}

// Every shell block is a recipe that a test runs, or illustrative with a
// reason; a recipe's name means one text wherever it appears.
func TestRecipeBlocksMarked(t *testing.T) {
	run := map[string]bool{}
	for _, sc := range recipeScenarios {
		for _, st := range sc.steps {
			run[st.block] = true
		}
	}
	texts := map[string]string{}
	runnable, illustrative := 0, 0
	for _, b := range docBlocks(t) {
		rel, _ := filepath.Rel(repoPath(), b.file)
		where := fmt.Sprintf("%s:%d", rel, b.line)
		switch {
		case b.mark == "file":
			continue
		case !shellLangs[b.lang]:
			if b.mark != "" {
				t.Errorf("%s: a %s block marked %s", where, b.lang, b.mark)
			}
			continue
		case b.mark == "illustrative":
			illustrative++
			if len(strings.Fields(b.arg)) < 3 {
				t.Errorf("%s: illustrative, but the reason %q says little", where, b.arg)
			}
		case b.mark == "recipe":
			if prev, ok := texts[b.arg]; ok {
				if prev != b.text {
					t.Errorf("%s: recipe %s differs from another of its name:\n%s\nand\n%s", where, b.arg, prev, b.text)
				}
				continue
			}
			texts[b.arg] = b.text
			runnable++
			if !run[b.arg] && recipesElsewhere[b.arg] == "" {
				t.Errorf("%s: recipe %s is run by no test", where, b.arg)
			}
		default:
			t.Errorf("%s: a shell block with neither <!-- recipe: NAME --> nor <!-- illustrative: REASON --> before it", where)
		}
	}
	for name := range run {
		if _, ok := texts[name]; !ok {
			t.Errorf("TestRecipes runs %s, which no page holds", name)
		}
	}
	for name := range recipesElsewhere {
		if _, ok := texts[name]; !ok {
			t.Errorf("%s runs %s, which no page holds", recipesElsewhere[name], name)
		}
	}
	t.Logf("%d runnable recipes, %d illustrative blocks", runnable, illustrative)
}

// A recipeEnv is what a scenario's recipes run against: a directory,
// the environment, and the services the scenario asked for.
type recipeEnv struct {
	t     *testing.T
	dir   string
	env   []string
	repl  []string // old, new: the block's local spellings
	names *regexp.Regexp
	kafka *kafkaEnv
	http  *recorder
	pgBin string
}

// A recipeStep is a recipe run twice: before each run, then checked.
type recipeStep struct {
	block  string
	before func(e *recipeEnv, run int)
	check  func(e *recipeEnv, run int, r recipeResult)
}

type recipeResult struct {
	stdout, stderr string
	code           int
}

// A recipeScenario is recipes pasted in order into one shell session's
// worth of state: one directory, one broker, one database.
type recipeScenario struct {
	name  string
	needs string // any of "kafka", "http", "pg"
	setup func(e *recipeEnv)
	steps []recipeStep
}

// The names of topics and groups the recipes use; on a shared real broker
// each scenario gets them with a prefix of its own.
var (
	recipeTopics = []string{"orders", "orders-dlq", "logs", "orders-copy", "orders-copy-eo", "orders-restored", "orders-txn-copy", "events"}
	recipeGroups = []string{"orders-loader", "archive", "loader", "replay", "copier", "copier-eo", "copier-txn", "g", "pg"}
)

func (e *recipeEnv) name(s string) string {
	if e.kafka == nil {
		return s
	}
	return e.kafka.name(s)
}

func (e *recipeEnv) path(name string) string { return filepath.Join(e.dir, name) }

func (e *recipeEnv) write(name, data string, mode os.FileMode) {
	e.t.Helper()
	os.MkdirAll(filepath.Dir(e.path(name)), 0o755)
	if err := os.WriteFile(e.path(name), []byte(data), mode); err != nil {
		e.t.Fatal(err)
	}
}

// local is a recipe's text as it runs here: tail -F, which never ends, is
// cat; the brokers, URLs, topics and groups are the test's.
func (e *recipeEnv) local(text string) string {
	text = strings.NewReplacer(append([]string{"tail -F ", "cat "}, e.repl...)...).Replace(text)
	if e.names != nil {
		text = e.names.ReplaceAllStringFunc(text, func(m string) string {
			i := strings.IndexFunc(m, func(r rune) bool { return r != ' ' && r != ':' && r != '\'' && r != '"' && r != '\n' })
			j := strings.LastIndexFunc(m, func(r rune) bool { return r != ' ' && r != '\'' && r != '"' && r != '\n' })
			return m[:i] + e.name(m[i:j+1]) + m[j+1:]
		})
	}
	return text
}

// run runs a recipe in a shell, as pasted.
func (e *recipeEnv) run(text string) recipeResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "sh", "-c", e.local(text))
	c.Dir = e.dir
	c.Env = append(os.Environ(), e.env...)
	// The shell's children go with it on a time-out.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	keepOutput(stdout.String(), stderr.String())
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", text, err)
	}
	if ctx.Err() != nil {
		e.t.Fatalf("%s: still running after 3 minutes; stderr:\n%s", text, stderr.String())
	}
	return recipeResult{stdout.String(), stderr.String(), code}
}

// A recorder is an HTTP receiver that keeps every request, bodies
// decompressed.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	uri, encoding, auth string
	body                []byte
}

func newRecorder(t *testing.T) *recorder {
	rc := &recorder{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if r.Header.Get("Content-Encoding") == "gzip" {
			body = decompress(t, "gzip", body)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, recorded{r.RequestURI, r.Header.Get("Content-Encoding"), r.Header.Get("Authorization"), body})
		rc.mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	return rc
}

// take returns the requests received since the last take.
func (rc *recorder) take() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.reqs
	rc.reqs = nil
	return r
}

// The runnable recipes of README.md and docs/, each run twice in a row as
// pasted, with its result checked after each run.
func TestRecipes(t *testing.T) {
	binDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(binDir, "batchpipe")); err != nil {
		t.Fatal(err)
	}
	// duckdb's command line, through Python's duckdb, which the tests
	// already need: rows as tab-separated lines.
	duckdb := `#!/bin/sh
[ "$1" = -c ] || { echo "duckdb shim: -c SQL only" >&2; exit 2; }
exec python3 -c 'import sys, duckdb
for row in duckdb.sql(sys.argv[1]).fetchall(): print(*row, sep="\t")' "$2"
`
	if err := os.WriteFile(filepath.Join(binDir, "duckdb"), []byte(duckdb), 0o755); err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	files := map[string]string{}
	for _, b := range docBlocks(t) {
		switch b.mark {
		case "recipe":
			blocks[b.arg] = b.text
		case "file":
			files[b.arg] = b.text
		}
	}
	for _, sc := range recipeScenarios {
		t.Run(sc.name, func(t *testing.T) {
			e := &recipeEnv{t: t, dir: t.TempDir()}
			path := binDir
			if strings.Contains(sc.needs, "pg") {
				e.pgBin = startPostgres(t)
				path += ":" + e.pgBin
			}
			e.env = append(e.env, "PATH="+path+":"+os.Getenv("PATH"))
			if strings.Contains(sc.needs, "kafka") {
				e.kafka = newKafka(t, 0)
				for _, topic := range recipeTopics {
					kafkatest.CreateTopic(t, e.kafka.addr, e.name(topic), 4)
				}
				names := append(slices.Clone(recipeTopics), recipeGroups...)
				slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
				e.names = regexp.MustCompile(`(^|[ :'"])(` + strings.Join(names, "|") + `)([ '"\n]|$)`)
				e.repl = append(e.repl, "localhost:9092", e.kafka.addr, "127.0.0.1:9092", e.kafka.addr)
				e.env = append(e.env, "BATCHPIPE_KAFKA_BROKERS="+e.kafka.addr)
			}
			if strings.Contains(sc.needs, "http") {
				e.http = newRecorder(t)
				for _, u := range []string{"http://localhost:8123/", "http://localhost:8428/", "https://api.example.com/"} {
					e.repl = append(e.repl, u, e.http.URL+"/")
				}
				e.env = append(e.env, "URL="+e.http.URL+"/ingest", "TOKEN="+recipeToken)
			}
			for name, text := range files {
				e.write(name, text, 0o644)
			}
			if sc.setup != nil {
				sc.setup(e)
			}
			for _, st := range sc.steps {
				text, ok := blocks[st.block]
				if !ok {
					t.Fatalf("no recipe %s in README.md or docs/", st.block)
				}
				for i := range 2 {
					if st.before != nil {
						st.before(e, i)
					}
					r := e.run(text)
					if st.check != nil {
						st.check(e, i, r)
					} else if r.code != 0 {
						t.Errorf("%s, run %d: exit %d; stderr:\n%s", st.block, i+1, r.code, r.stderr)
					}
				}
			}
		})
	}
}

// recipeToken is $TOKEN in the recipes: one of testSecrets, which no
// output may hold.
var recipeToken = testSecrets[0]
