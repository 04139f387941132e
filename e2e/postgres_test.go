package e2e

// The PostgreSQL recipe for --exactly-once (docs/exactly-once.md), against a real
// PostgreSQL that the test starts on its own.

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// pgBinDirs are where Debian puts PostgreSQL's server programs, a
// directory per major version.
var pgBinDirs, _ = filepath.Glob("/usr/lib/postgresql/*/bin")

// The recipe, as docs/exactly-once.md gives it.
const (
	pgSchema = `CREATE TABLE IF NOT EXISTS batchpipe_ledger (batch_id text PRIMARY KEY, loaded_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS events (line text NOT NULL);`
	pgLoad = `CREATE TEMP TABLE incoming (line text) ON COMMIT DROP;
\copy incoming FROM pstdin WITH (FORMAT csv, DELIMITER E'\x1f', QUOTE E'\x1e', FORCE_NOT_NULL (line))
SELECT (CASE WHEN count(*) = :records THEN '0' ELSE 'batch cut short' END)::int FROM incoming \g /dev/null
WITH first_time AS (
  INSERT INTO batchpipe_ledger (batch_id) VALUES (:'id') ON CONFLICT DO NOTHING RETURNING 1
)
INSERT INTO events (line) SELECT line FROM incoming WHERE EXISTS (SELECT 1 FROM first_time);
`
	pgCommand = `psql -X -q --single-transaction -v ON_ERROR_STOP=1 -v id="$BATCHPIPE_BATCH_ID" -v records="$BATCHPIPE_RECORDS" -f load.sql`
)

// startPostgres starts a PostgreSQL cluster in a directory of its own, on
// a free port, as the postgres user when the test runs as root (initdb
// refuses root), and sets PGHOST, PGPORT, PGUSER and PGDATABASE for it. It
// returns the directory of psql.
func startPostgres(t *testing.T) string {
	t.Helper()
	var bin string
	for _, d := range pgBinDirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			bin = d
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL's initdb is not installed (apt-get install postgresql)")
		}
		t.Skip("PostgreSQL's initdb is not installed")
	}
	dir, err := os.MkdirTemp("", "batchpipe-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Getuid() == 0 {
		u, err := exec.Command("id", "-u", "postgres").Output()
		g, err2 := exec.Command("id", "-g", "postgres").Output()
		if err != nil || err2 != nil {
			t.Fatal("running as root, and there is no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(strings.TrimSpace(string(u)))
		gid, _ := strconv.Atoi(strings.TrimSpace(string(g)))
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pg := func(name string, args ...string) {
		t.Helper()
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Dir = dir
		if cred != nil {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	data := filepath.Join(dir, "data")
	pg("initdb", "-D", data, "-U", "bp", "--auth=trust", "-E", "UTF8", "--no-sync")
	// -w waits until the server accepts connections.
	pg("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-o",
		"-p "+port+" -k "+dir+" -c listen_addresses=127.0.0.1 -c fsync=off", "start")
	t.Cleanup(func() { pg("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop") })
	t.Setenv("PGHOST", "127.0.0.1")
	t.Setenv("PGPORT", port)
	t.Setenv("PGUSER", "bp")
	t.Setenv("PGDATABASE", "postgres")
	return bin
}

// psql runs SQL and returns its unaligned output.
func psql(t *testing.T, bin, sql string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The ledger recipe through kill -9s: exactly N rows in the end, each
// record once, and one ledger row per batch.
func TestKafkaExactlyOncePostgresLedger(t *testing.T) {
	const perPartition = 5000
	pgBin := startPostgres(t)
	psql(t, pgBin, pgSchema)
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "load.sql"), []byte(pgLoad), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", pgBin+string(os.PathListSeparator)+os.Getenv("PATH"))
	k := newKafka(t, 4)
	addr := k.addr
	newProducer(t, addr).produce(k.topic, parts4, perPartition)
	args := func(n int) []string {
		return []string{"-v", "--kafka-brokers", addr, "--topic", k.topic, "--group", k.group, "--exactly-once", "--until-end",
			"-n", strconv.Itoa(n), "-j", "4", "--commit-interval", "20ms", "--kafka-session-timeout", "1s",
			"exec", "--", "sh", "-c", pgCommand}
	}
	for kill := range 5 {
		p := startIn(t, work, args(100+kill*47)...)
		p.waitLine("batches delivered", func(string) bool { return strings.Count(p.stderr(), "outcome=delivered") >= 2+kill })
		p.signal(syscall.SIGKILL)
		p.wait()
	}
	if p := startIn(t, work, args(900)...); p.wait() != 0 {
		t.Fatalf("final drain failed:\n%s", p.stderr())
	}
	if n := psql(t, pgBin, "SELECT count(*) FROM events"); n != strconv.Itoa(4*perPartition) {
		t.Fatalf("%s rows, want %d", n, 4*perPartition)
	}
	if n := psql(t, pgBin, "SELECT count(DISTINCT line) FROM events"); n != strconv.Itoa(4*perPartition) {
		t.Fatalf("%s distinct rows, want %d", n, 4*perPartition)
	}
	t.Logf("%s batches in the ledger", psql(t, pgBin, "SELECT count(*) FROM batchpipe_ledger"))
}
