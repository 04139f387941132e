package e2e

// The runnable recipes of README.md and docs/ and what each must do,
// pasted twice; TestRecipes runs them.

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// exitIs fails the step unless the run exited with code.
func (e *recipeEnv) exitIs(block string, run int, r recipeResult, code int) bool {
	e.t.Helper()
	if r.code != code {
		e.t.Errorf("%s, run %d: exit %d, want %d; stderr:\n%s", block, run+1, r.code, code, r.stderr)
		return false
	}
	return true
}

// fileLines returns the lines of the files matching pattern in the
// recipe's directory, all together.
func (e *recipeEnv) globLines(pattern string) (files int, lines []string) {
	e.t.Helper()
	names, err := filepath.Glob(e.path(pattern))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(b) > 0 {
			lines = append(lines, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
		}
	}
	return len(names), lines
}

// topic returns the values of every record of a recipe's topic.
func (e *recipeEnv) topic(name string) []string {
	e.t.Helper()
	var vs []string
	for _, m := range readTopic(e.t, e.kafka.addr, e.name(name)) {
		vs = append(vs, string(m.Value))
	}
	return vs
}

// produce writes n records to each of a recipe topic's 4 partitions, and
// returns their values.
func (e *recipeEnv) produce(topic string, n int, value func(p int32, i int) string, ts time.Time) []string {
	e.t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer([]string{e.kafka.addr}, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	var values []string
	for part := range int32(4) {
		for i := range n {
			v := value(part, i)
			values = append(values, v)
			msgs = append(msgs, &sarama.ProducerMessage{Topic: e.name(topic), Partition: part, Value: sarama.StringEncoder(v), Timestamp: ts})
		}
	}
	if err := p.SendMessages(msgs); err != nil {
		e.t.Fatal(err)
	}
	return values
}

// sameLines says whether got holds exactly want's lines, in any order.
func sameLines(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// counted is how many times each line comes in lines.
func counted(lines []string) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		m[l]++
	}
	return m
}

// psqlLines is what COPY must load: backslashes, tabs, nginx's \x00 and an
// empty line as they are; COPY's text format mangled or refused each.
var psqlLines = []string{`GET /a HTTP/1.1`, `C:\temp\new`, "a\ttab", `nginx \x00 escape`, "", `"quoted", with a comma`, `\N`, `ünïcödé`}

func md5Lines(lines []string) string {
	l := slices.Clone(lines)
	slices.Sort(l)
	sum := md5.Sum([]byte(strings.Join(l, "\n")))
	return hex.EncodeToString(sum[:])
}

var stdinRecipes = []recipeScenario{
	{name: "psql", needs: "pg", setup: func(e *recipeEnv) {
		e.write("access.log", strings.Join(psqlLines, "\n")+"\n", 0o644)
	}, steps: []recipeStep{{block: "psql-copy", check: func(e *recipeEnv, run int, r recipeResult) {
		if !e.exitIs("psql-copy", run, r, 0) {
			return
		}
		var want []string
		for range run + 1 {
			want = append(want, psqlLines...)
		}
		n := psql(e.t, e.pgBin, "SELECT count(*) FROM hits")
		sum := psql(e.t, e.pgBin, `SELECT md5(string_agg(line, E'\n' ORDER BY line COLLATE "C")) FROM hits`)
		if n != strconv.Itoa(len(want)) || sum != md5Lines(want) {
			e.t.Errorf("psql-copy, run %d: %s rows, md5 %s; want %d rows of the log's lines exactly (md5 %s)", run+1, n, sum, len(want), md5Lines(want))
		}
	}}}},

	{name: "upload-and-replay", setup: func(e *recipeEnv) {
		// An upload fails while down exists, for the batch holding item 13.
		e.write("upload.sh", `#!/bin/sh
f=$(mktemp uploads/u.XXXXXX)
cat >"$f"
if [ -e down ] && grep -qx 'item 13' "$f"; then rm "$f"; exit 1; fi
`, 0o755)
		e.write("items.txt", lines(1000, "item %d"), 0o644)
		e.write("uploads/.keep", "", 0o644)
		e.write("down", "", 0o644)
	}, steps: []recipeStep{
		{block: "upload", check: func(e *recipeEnv, run int, r recipeResult) {
			if !e.exitIs("upload", run, r, 3) {
				return
			}
			_, failed := e.globLines("failed.txt")
			if len(failed) != 100*(run+1) || !slices.Contains(failed, "item 13") {
				e.t.Errorf("upload, run %d: %d records in failed.txt, want the batch holding item 13 each run", run+1, len(failed))
			}
		}},
		{block: "upload-replay", before: func(e *recipeEnv, run int) {
			os.Remove(e.path("down"))
		}, check: func(e *recipeEnv, run int, r recipeResult) {
			if !e.exitIs("upload-replay", run, r, 0) {
				return
			}
			// Two uploads of items.txt: every item twice, none more.
			_, up := e.globLines("uploads/u.*")
			c := counted(up)
			for i := range 1000 {
				if n := c[fmt.Sprintf("item %d", i)]; n != 2 {
					e.t.Fatalf("upload-replay, run %d: item %d uploaded %d times, want 2 (once per upload run)", run+1, i, n)
				}
			}
			if _, err := os.Stat(e.path("replay.txt")); err == nil {
				e.t.Errorf("upload-replay, run %d: replay.txt left behind", run+1)
			}
			if _, failed := e.globLines("failed.txt"); len(failed) > 0 {
				e.t.Errorf("upload-replay, run %d: %d records in failed.txt, want none", run+1, len(failed))
			}
		}},
	}},

	{name: "files", setup: func(e *recipeEnv) {
		e.write("app.log", lines(2000, "line %d of the log"), 0o644)
	}, steps: []recipeStep{
		{block: "append-log", check: func(e *recipeEnv, run int, r recipeResult) {
			if e.exitIs("append-log", run, r, 0) && readFile(e.t, e.path("batched.log")) != strings.Repeat(readFile(e.t, e.path("app.log")), run+1) {
				e.t.Errorf("append-log, run %d: batched.log is not the log, %d times", run+1, run+1)
			}
		}},
		{block: "per-tenant-files", before: func(e *recipeEnv, run int) {
			// Another hour's events, which may well be written in the same hour.
			var ev strings.Builder
			for i := range 3000 {
				fmt.Fprintf(&ev, `{"tenant":{"id":%q},"n":%d}`+"\n", []string{"acme", "globex", "a/b"}[i%3], run*3000+i)
			}
			e.write("events.ndjson", ev.String(), 0o644)
		}, check: func(e *recipeEnv, run int, r recipeResult) {
			if !e.exitIs("per-tenant-files", run, r, 0) {
				return
			}
			// A directory per tenant, the / in a/b escaped: each holds
			// its tenant's records, once per run.
			for tenant, dir := range map[string]string{"acme": "acme", "globex": "globex", "a/b": "a%2Fb"} {
				files, got := e.globLines(filepath.Join("tenants", dir, "*.ndjson"))
				n := strings.Count(strings.Join(got, "\n"), `"id":`+strconv.Quote(tenant))
				if files == 0 || len(got) != 1000*(run+1) || n != len(got) {
					e.t.Errorf("per-tenant-files, run %d: tenants/%s: %d files, %d records, %d of them %s's; want %d of %s's",
						run+1, dir, files, len(got), n, tenant, 1000*(run+1), tenant)
				}
			}
		}},
	}},

	{name: "http", needs: "http", setup: func(e *recipeEnv) {
		e.write("metrics.lp", lines(12000, "cpu,host=a usage=%d"), 0o644)
		var ev, tsv strings.Builder
		for i := range 3000 {
			fmt.Fprintf(&ev, `{"event":%d}`+"\n", i)
			fmt.Fprintf(&tsv, "%d\t%s\tpayload %d\n", i, []string{"click", "view", "buy"}[i%3], i)
		}
		e.write("events.ndjson", ev.String(), 0o644)
		e.write("events.tsv", tsv.String(), 0o644)
	}, steps: []recipeStep{
		{block: "victoriametrics", check: func(e *recipeEnv, run int, r recipeResult) {
			reqs := e.http.take()
			if !e.exitIs("victoriametrics", run, r, 0) {
				return
			}
			var got []string
			for _, q := range reqs {
				l := strings.Split(strings.TrimSuffix(string(q.body), "\n"), "\n")
				if q.encoding != "gzip" || len(l) > 5000 || !strings.HasPrefix(q.uri, "/write") {
					e.t.Errorf("victoriametrics: a request to %s, encoding %q, of %d lines", q.uri, q.encoding, len(l))
				}
				got = append(got, l...)
			}
			if !sameLines(got, strings.Split(strings.TrimSuffix(readFile(e.t, e.path("metrics.lp")), "\n"), "\n")) {
				e.t.Errorf("victoriametrics, run %d: %d lines received, want metrics.lp's 12000 once", run+1, len(got))
			}
		}},
		{block: "api-token", check: func(e *recipeEnv, run int, r recipeResult) {
			reqs := e.http.take()
			if !e.exitIs("api-token", run, r, 0) {
				return
			}
			n := 0
			for _, q := range reqs {
				var events []map[string]int
				if err := json.Unmarshal(q.body, &events); err != nil || len(events) > 100 || q.auth != "Bearer "+recipeToken {
					e.t.Fatalf("api-token: a request of %d events (%v), Authorization %q", len(events), err, q.auth)
				}
				n += len(events)
			}
			if n != 3000 {
				e.t.Errorf("api-token, run %d: %d events received, want 3000", run+1, n)
			}
		}},
		{block: "per-type-inserts", check: func(e *recipeEnv, run int, r recipeResult) {
			reqs := e.http.take()
			if !e.exitIs("per-type-inserts", run, r, 0) {
				return
			}
			byType := map[string]int{}
			for _, q := range reqs {
				u, err := url.Parse(q.uri)
				if err != nil {
					e.t.Fatal(err)
				}
				query := u.Query().Get("query")
				for l := range strings.Lines(string(q.body)) {
					if f := strings.Split(l, "\t"); len(f) < 2 || query != "INSERT INTO events_"+f[1]+" FORMAT TSV" {
						e.t.Fatalf("per-type-inserts: %q went to %q", l, query)
					}
				}
				byType[query] += strings.Count(string(q.body), "\n")
			}
			if len(byType) != 3 || byType["INSERT INTO events_click FORMAT TSV"] != 1000 {
				e.t.Errorf("per-type-inserts, run %d: rows per insert: %v, want 1000 for each of 3 types", run+1, byType)
			}
		}},
	}},

	{name: "parquet", setup: func(e *recipeEnv) {
		e.write("testdata/sample.ndjson", readFile(e.t, repoPath("testdata/sample.ndjson")), 0o644)
		e.write("testdata/parquet/sample.schema.json", readFile(e.t, repoPath("testdata/parquet/sample.schema.json")), 0o644)
		pythonIn(e.t, e.dir, "import duckdb") // skips without it, but in CI
	}, steps: []recipeStep{{block: "parquet-duckdb", check: func(e *recipeEnv, run int, r recipeResult) {
		if !e.exitIs("parquet-duckdb", run, r, 0) {
			return
		}
		total := 0
		for l := range strings.Lines(r.stdout) {
			f := strings.Split(l, "\t")
			n, err := strconv.Atoi(f[min(1, len(f)-1)])
			if len(f) != 3 || err != nil {
				e.t.Fatalf("parquet-duckdb: duckdb printed %q", r.stdout)
			}
			total += n
		}
		if total != 1000*(run+1) {
			e.t.Errorf("parquet-duckdb, run %d: DuckDB counts %d records, want %d (1000 a run)", run+1, total, 1000*(run+1))
		}
	}}}},
}

var recipeScenarios = slices.Concat(stdinRecipes, kafkaRecipes)

// recordValue is the value of a test record: its partition and number.
func recordValue(p int32, i int) string { return fmt.Sprintf("order %d/%d", p, i) }

// producedBefore produces 500 records to each partition of orders before
// each run, the values of every run kept in *all.
func producedBefore(topic string, all *[]string) func(e *recipeEnv, run int) {
	return func(e *recipeEnv, run int) {
		*all = append(*all, e.produce(topic, 500, func(p int32, i int) string { return recordValue(p, run*500+i) }, time.Time{})...)
	}
}

var kafkaRecipes = func() []recipeScenario {
	var drained, archived, copied, ledger []string
	var seeded, before, dead int
	return []recipeScenario{
		{name: "kafka-drain", needs: "kafka", steps: []recipeStep{{block: "kafka-drain", before: producedBefore("orders", &drained),
			check: func(e *recipeEnv, run int, r recipeResult) {
				// The group resumes where it committed: each record once.
				if _, got := e.globLines("orders.ndjson"); e.exitIs("kafka-drain", run, r, 0) && !sameLines(got, drained) {
					e.t.Errorf("kafka-drain, run %d: orders.ndjson holds %d records, want the %d produced, once each", run+1, len(got), len(drained))
				}
			}}}},

		{name: "kafka-archive", needs: "kafka", steps: []recipeStep{{block: "kafka-archive", before: producedBefore("orders", &archived),
			check: func(e *recipeEnv, run int, r recipeResult) {
				if !e.exitIs("kafka-archive", run, r, 0) {
					return
				}
				files, got := e.globLines("archive/*/*.ndjson")
				if !sameLines(got, archived) {
					e.t.Errorf("kafka-archive, run %d: %d files hold %d records, want the %d produced, once each", run+1, files, len(got), len(archived))
				}
			}}}},

		{name: "kafka-window", needs: "kafka", steps: []recipeStep{{block: "kafka-window", before: func(e *recipeEnv, run int) {
			if run > 0 {
				return
			}
			now := time.Now()
			e.produce("orders", 5, func(p int32, i int) string { return "too old " + recordValue(p, i) }, now.Add(-60*time.Hour))
			e.produce("orders", 5, func(p int32, i int) string { return "in the window " + recordValue(p, i) }, now.Add(-36*time.Hour))
			e.produce("orders", 5, func(p int32, i int) string { return "too new " + recordValue(p, i) }, now)
		}, check: func(e *recipeEnv, run int, r recipeResult) {
			// Every run reads the window again; the file holds it once.
			_, got := e.globLines("day.ndjson")
			in := 0
			for _, l := range got {
				if strings.HasPrefix(l, "in the window ") {
					in++
				}
			}
			if e.exitIs("kafka-window", run, r, 0) && (len(got) != 20 || in != 20) {
				e.t.Errorf("kafka-window, run %d: day.ndjson holds %d records, %d of the window; want its 20, once", run+1, len(got), in)
			}
		}}}},

		{name: "kafka-envelope", needs: "kafka http", steps: []recipeStep{{block: "kafka-envelope", before: func(e *recipeEnv, run int) {
			e.produce("events", 100, recordValue, time.Time{})
		}, check: func(e *recipeEnv, run int, r recipeResult) {
			reqs := e.http.take()
			if !e.exitIs("kafka-envelope", run, r, 0) {
				return
			}
			n := 0
			for _, q := range reqs {
				for l := range bytes.Lines(q.body) {
					var env struct {
						Topic string
						Value string
					}
					if err := json.Unmarshal(l, &env); err != nil || env.Topic != e.name("events") || !strings.HasPrefix(env.Value, "order ") {
						e.t.Fatalf("kafka-envelope: %q is not an envelope of an events record (%v)", l, err)
					}
					n++
				}
			}
			if n != 400 {
				e.t.Errorf("kafka-envelope, run %d: %d envelopes, want the 400 records produced since the last run", run+1, n)
			}
		}}}},

		// docs/kafka-sink.md, pasted in order into one broker.
		{name: "kafka-sink", needs: "kafka", setup: func(e *recipeEnv) {
			var log strings.Builder
			for i := range 1000 {
				fmt.Fprintf(&log, "k%d\tvalue %d\n", i%10, i)
			}
			e.write("app.log", log.String(), 0o644)
			// A load fails while down exists, for the batch holding 13.
			e.write("load.sh", `#!/bin/sh
f=$(mktemp loaded/l.XXXXXX)
cat >"$f"
if [ -e down ] && grep -qx 13 "$f"; then rm "$f"; exit 1; fi
`, 0o755)
			e.write("loaded/.keep", "", 0o644)
		}, steps: []recipeStep{
			{block: "kafka-seed", check: func(e *recipeEnv, run int, r recipeResult) {
				seeded = len(e.topic("orders"))
				if e.exitIs("kafka-seed", run, r, 0) && seeded != 1000*(run+1) {
					e.t.Errorf("kafka-seed, run %d: orders holds %d records, want %d", run+1, seeded, 1000*(run+1))
				}
			}},
			{block: "kafka-keyed-log", check: func(e *recipeEnv, run int, r recipeResult) {
				if !e.exitIs("kafka-keyed-log", run, r, 0) {
					return
				}
				msgs := readTopic(e.t, e.kafka.addr, e.name("logs"))
				part := map[string]int32{}
				for _, m := range msgs {
					if p, ok := part[string(m.Key)]; ok && p != m.Partition || !strings.HasPrefix(string(m.Value), "value ") {
						e.t.Fatalf("kafka-keyed-log: key %q, value %q in partition %d", m.Key, m.Value, m.Partition)
					}
					part[string(m.Key)] = m.Partition
				}
				if len(msgs) != 1000*(run+1) || len(part) != 10 {
					e.t.Errorf("kafka-keyed-log, run %d: %d records under %d keys, want %d under 10", run+1, len(msgs), len(part), 1000*(run+1))
				}
			}},
			{block: "kafka-dlq-replay", before: func(e *recipeEnv, run int) {
				if run == 0 {
					e.write("down", "", 0o644)
				} else {
					os.Remove(e.path("down"))
				}
			}, check: func(e *recipeEnv, run int, r recipeResult) {
				if !e.exitIs("kafka-dlq-replay", run, r, 0) {
					return
				}
				dlq := len(e.topic("orders-dlq"))
				if run == 0 {
					dead, before = dlq, seeded
				}
				orders := len(e.topic("orders"))
				_, loaded := e.globLines("loaded/l.*")
				switch {
				case dead == 0 || dlq != dead || orders != before+dead:
					e.t.Errorf("kafka-dlq-replay, run %d: %d dead-lettered (%d at first), orders %d; want the failed batch replayed once into orders' %d",
						run+1, dlq, dead, orders, before)
				case run == 1:
					// The replayed records loaded once: each of seq's
					// 1000 numbers twice, as kafka-seed ran twice.
					c := counted(loaded)
					for i := 1; i <= 1000; i++ {
						if c[strconv.Itoa(i)] != 2 {
							e.t.Fatalf("kafka-dlq-replay: %d loaded %d times, want 2", i, c[strconv.Itoa(i)])
						}
					}
				}
				seeded = orders
			}},
			{block: "kafka-backup", check: func(e *recipeEnv, run int, r recipeResult) {
				if !e.exitIs("kafka-backup", run, r, 0) {
					return
				}
				_, backup := e.globLines("orders.backup.ndjson")
				restored := e.topic("orders-restored")
				if len(backup) != seeded || len(restored) != seeded*(run+1) {
					e.t.Errorf("kafka-backup, run %d: the backup holds %d records, %d restored in all; want orders' %d in the backup, restored once a run",
						run+1, len(backup), len(restored), seeded)
				}
			}},
			{block: "kafka-copy", check: func(e *recipeEnv, run int, r recipeResult) {
				if n := len(e.topic("orders-copy")); e.exitIs("kafka-copy", run, r, 0) && n != seeded {
					e.t.Errorf("kafka-copy, run %d: orders-copy holds %d records, want orders' %d", run+1, n, seeded)
				}
			}},
			{block: "kafka-copy-exactly-once", check: func(e *recipeEnv, run int, r recipeResult) {
				if e.exitIs("kafka-copy-exactly-once", run, r, 0) && strings.TrimSpace(r.stdout) != strconv.Itoa(seeded) {
					e.t.Errorf("kafka-copy-exactly-once, run %d: counted %q, want orders' %d", run+1, r.stdout, seeded)
				}
			}},
		}},

		{name: "kafka-txn-copy", needs: "kafka", steps: []recipeStep{{block: "kafka-txn-copy", before: producedBefore("orders", &copied),
			check: func(e *recipeEnv, run int, r recipeResult) {
				if e.exitIs("kafka-txn-copy", run, r, 0) && strings.TrimSpace(r.stdout) != strconv.Itoa(len(copied)) {
					e.t.Errorf("kafka-txn-copy, run %d: counted %q, want the %d produced", run+1, r.stdout, len(copied))
				}
			}}}},

		{name: "pg-ledger", needs: "kafka pg", steps: []recipeStep{{block: "pg-ledger", before: func(e *recipeEnv, run int) {
			producedBefore("events", &ledger)(e, run)
			// An empty record: CSV reads it as NULL unless FORCE_NOT_NULL.
			ledger = append(ledger, e.produce("events", 1, func(int32, int) string { return "" }, time.Time{})...)
		}, check: func(e *recipeEnv, run int, r recipeResult) {
			if !e.exitIs("pg-ledger", run, r, 0) {
				return
			}
			n := psql(e.t, e.pgBin, "SELECT count(*) FROM events")
			sum := psql(e.t, e.pgBin, `SELECT md5(string_agg(line, E'\n' ORDER BY line COLLATE "C")) FROM events`)
			if n != strconv.Itoa(len(ledger)) || sum != md5Lines(ledger) {
				e.t.Errorf("pg-ledger, run %d: %s rows, want the %d records produced, once each", run+1, n, len(ledger))
			}
		}}}},
	}
}()
