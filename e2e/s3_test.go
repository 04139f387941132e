package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/IBM/sarama"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/batchpipe/batchpipe/kafka/kafkatest"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// testLines is n lines of bytes of every kind but the newline, CRLF
// endings among them.
func testLines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "%d\t\xff\xfe é \x00 \"q\"", i)
		if i%7 == 0 {
			b.WriteByte('\r')
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestS3ServerRefusesSecondCreateOnlyPut(t *testing.T) {
	st := newS3Test(t, startS3Server(t))
	bkt := st.bucket("proof")
	ctx := context.Background()
	put := func(body string) error {
		_, err := st.c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bkt), Key: aws.String("k"),
			Body: strings.NewReader(body), IfNoneMatch: aws.String("*")})
		return err
	}
	if err := put("one"); err != nil {
		t.Fatal(err)
	}
	var re *awshttp.ResponseError
	if err := put("two"); !errors.As(err, &re) || re.HTTPStatusCode() != 412 {
		t.Fatalf("second create-only PUT: %v, want 412: the store does not honour If-None-Match", err)
	}
	up, err := st.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bkt), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	part, err := st.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bkt), Key: aws.String("k"), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader("three")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bkt), Key: aws.String("k"), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}},
		IfNoneMatch:     aws.String("*")})
	if !errors.As(err, &re) || re.HTTPStatusCode() != 412 {
		t.Fatalf("create-only CompleteMultipartUpload over an object: %v, want 412", err)
	}
	if got, _ := st.get(bkt, "k"); string(got) != "one" {
		t.Errorf("object is %q, want the first PUT's", got)
	}
}

func TestS3Sink(t *testing.T) {
	st := newS3Test(t, startS3Server(t))
	bkt := st.bucket("batches")
	input := testLines(10000)

	t.Run("exact bytes, per-batch keys", func(t *testing.T) {
		r := run(t, bytes.NewReader(input), append([]string{"-n", "1000", "-j", "4"}, st.s3("s3://"+bkt+"/plain/{run}/{seq}.log")...)...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		keys := bySeq(st.keys(bkt, "plain/"))
		if len(keys) != 10 {
			t.Fatalf("%d objects, want 10: %q", len(keys), keys)
		}
		var all []byte
		for i, k := range keys {
			if !strings.HasSuffix(k, fmt.Sprintf("/%d.log", i+1)) {
				t.Errorf("key %q, want …/%d.log", k, i+1)
			}
			b, out := st.get(bkt, k)
			if aws.ToString(out.ContentType) != "text/plain" || out.Metadata["batchpipe-sha256"] == "" {
				t.Errorf("%s: Content-Type %q, metadata %v", k, aws.ToString(out.ContentType), out.Metadata)
			}
			all = append(all, b...)
		}
		if !bytes.Equal(all, input) {
			t.Errorf("objects in order hold %d bytes, not the %d read", len(all), len(input))
		}
	})

	for _, algo := range []string{"gzip", "zstd"} {
		t.Run(algo, func(t *testing.T) {
			prefix := algo + "/"
			r := run(t, bytes.NewReader(input), append([]string{"-n", "3000"}, st.s3("--compress", algo, "s3://"+bkt+"/"+prefix+"{seq}.log."+algo)...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var all []byte
			for _, k := range bySeq(st.keys(bkt, prefix)) {
				b, out := st.get(bkt, k)
				if aws.ToString(out.ContentEncoding) != algo {
					t.Errorf("%s: Content-Encoding %q, want %s", k, aws.ToString(out.ContentEncoding), algo)
				}
				all = append(all, decompress(t, algo, b)...)
			}
			if !bytes.Equal(all, input) {
				t.Errorf("objects decompress to %d bytes, not the %d read", len(all), len(input))
			}
		})
	}

	t.Run("multipart", func(t *testing.T) {
		raw := make([]byte, 9<<20)
		rand.Read(raw)
		var big bytes.Buffer
		for chunk := range slices.Chunk([]byte(base64.StdEncoding.EncodeToString(raw)), 100) {
			big.Write(chunk)
			big.WriteByte('\n')
		}
		r := run(t, bytes.NewReader(big.Bytes()), append([]string{"-n", "1000000", "-b", "64M"},
			st.s3("--part-size", "5M", "s3://"+bkt+"/big/{seq}")...)...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		b, out := st.get(bkt, "big/1")
		if !bytes.Equal(b, big.Bytes()) {
			t.Errorf("object holds %d bytes, not the %d read", len(b), big.Len())
		}
		if etag := aws.ToString(out.ETag); !strings.HasSuffix(strings.Trim(etag, `"`), "-3") {
			t.Errorf("ETag %s: not that of a multipart upload of 3 parts", etag)
		}
		uploads, err := st.c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bkt)})
		if err != nil || len(uploads.Uploads) != 0 {
			t.Errorf("uploads left: %v (%v)", uploads.Uploads, err)
		}
	})

	t.Run("a batch found in place, another refused", func(t *testing.T) {
		args := append([]string{"-n", "500", "--stats-file", filepath.Join(t.TempDir(), "stats.json")}, st.s3("s3://"+bkt+"/again/{seq}.log")...)
		some := input[:bytes.IndexByte(input[20000:], '\n')+20001]
		if r := run(t, bytes.NewReader(some), args...); r.code != 0 {
			t.Fatalf("first run: exit %d: %s", r.code, r.stderr)
		}
		n := len(st.keys(bkt, "again/"))
		r := run(t, bytes.NewReader(some), args...)
		if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("%d batches found in place", n)) {
			t.Fatalf("same bytes again: exit %d, want 0 and %d batches found in place: %s", r.code, n, r.stderr)
		}
		if stats := readFile(t, args[3]); !strings.Contains(stats, fmt.Sprintf(`"batches_found_in_place": %d`, n)) && !strings.Contains(stats, fmt.Sprintf(`"batches_found_in_place":%d`, n)) {
			t.Errorf("stats file does not count %d batches found in place: %s", n, stats)
		}
		r = run(t, strings.NewReader("other\nbytes\n"), args...)
		if r.code != 1 || !strings.Contains(r.stderr, "s3://"+bkt+"/again/1.log exists already with other bytes") {
			t.Errorf("other bytes: exit %d, want 1 naming the key: %s", r.code, r.stderr)
		}
		if b, _ := st.get(bkt, "again/1.log"); bytes.Contains(b, []byte("other")) {
			t.Error("object overwritten")
		}
	})

	t.Run("SlowDown retried", func(t *testing.T) {
		// A proxy that answers the first two uploads 503 SlowDown.
		target, _ := url.Parse(st.endpoint)
		proxy := httputil.NewSingleHostReverseProxy(target)
		var mu sync.Mutex
		slowed := 0
		front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			slow := r.Method == http.MethodPut && !strings.Contains(r.URL.Path, ".batchpipe-probe") && slowed < 2
			if slow {
				slowed++
			}
			mu.Unlock()
			if slow {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(503)
				io.WriteString(w, "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
				return
			}
			proxy.ServeHTTP(w, r)
		})}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go front.Serve(l)
		defer front.Close()
		r := run(t, strings.NewReader("a\nb\nc\n"), "-n", "1", "--backoff", "10ms",
			"s3", "--endpoint", "http://"+l.Addr().String(), "--path-style", "s3://"+bkt+"/slow/{seq}")
		if r.code != 0 || !strings.Contains(r.stderr, "2 retries") {
			t.Fatalf("exit %d, want 0 after 2 retries: %s", r.code, r.stderr)
		}
		if keys := st.keys(bkt, "slow/"); len(keys) != 3 {
			t.Errorf("objects %q, want 3", keys)
		}
	})

	t.Run("missing bucket", func(t *testing.T) {
		p := start(t, st.s3("s3://no-such-bucket/{seq}")...)
		code := p.wait() // stdin still open: nothing was read
		if code != 69 || !strings.Contains(p.stderr(), "s3://no-such-bucket not found") {
			t.Errorf("exit %d, want 69 naming the bucket: %s", code, p.stderr())
		}
	})
}

func TestS3BadCredentials(t *testing.T) {
	// With authentication on, moto knows no access key but those it made.
	st := newS3Test(t, startS3Server(t, "INITIAL_NO_AUTH_ACTION_COUNT=0"))
	p := start(t, st.s3("s3://some-bucket/{seq}")...)
	code := p.wait()
	if code != 2 || !strings.Contains(p.stderr(), "check the credentials") {
		t.Errorf("exit %d, want 2 naming the credentials: %s", code, p.stderr())
	}
	for _, s := range []string{s3TestSecret, s3TestKeyID, s3TestSecret[:8]} {
		if strings.Contains(p.stderr(), s) {
			t.Errorf("stderr shows a credential: %s", p.stderr())
		}
	}
}

// decompress reads a whole gzip or zstd stream.
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
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", algo, err)
	}
	return b
}

// Killed with -9 at random moments of an --exactly-once drain from Kafka,
// runs again and again write every record into exactly one object, and no
// key twice: the batches are formed again the same, so are their keys, and
// a batch found in place is not written again.
func TestS3KafkaExactlyOnceKill9(t *testing.T) {
	endpoint, log := startS3ServerLog(t)
	st := newS3Test(t, endpoint)
	bkt := st.bucket("archive")
	k := newKafka(t, 4)
	// BATCHPIPE_TEST_S3_KILL9=RECORDS,KILLS runs it at another scale by
	// hand (1000000,10 for a million); CI keeps it small.
	records, kills := 20000, 4
	if v := os.Getenv("BATCHPIPE_TEST_S3_KILL9"); v != "" {
		a, b, _ := strings.Cut(v, ",")
		var err1, err2 error
		records, err1 = strconv.Atoi(a)
		kills, err2 = strconv.Atoi(b)
		if err := errors.Join(err1, err2); err != nil || records < 4 || kills < 1 {
			t.Fatalf("BATCHPIPE_TEST_S3_KILL9=%q: want RECORDS,KILLS: %v", v, err)
		}
	}
	perPart := records / 4
	// Batches grow with the topic, so that its objects stay a few thousand.
	scale := max(1, records/200000)
	newProducer(t, k.addr).produce(k.topic, parts4, perPart)
	args := func(extra ...string) []string {
		return append(append([]string{"--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--exactly-once",
			"-j", "4", "-t", "100ms", "--commit-interval", "20ms", "--kafka-session-timeout", "1s", "-v"}, extra...),
			st.s3("--compress", "zstd", "s3://"+bkt+"/{topic}/{partition}/{first_offset}-{last_offset}.ndjson.zst")...)
	}
	objects := func() int { return len(st.keys(bkt, k.topic+"/")) }
	for i := range kills {
		// Each run cuts other batches (-n), which the plan of the run
		// before overrides where it had begun them.
		n := (97 + 61*(i%4)) * scale
		p := start(t, args("-n", strconv.Itoa(n))...)
		if scale > 1 {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("run %d's stderr:\n%s", i+1, p.stderr())
				}
			})
		}
		// At scale the kills spread over the drain: each run writes its
		// share of new objects, a margin left for the last. Counted from
		// the run's lines, not by listing the bucket: while a listing of
		// a thousand keys went on, a run wrote many more than its share,
		// and the 7th or 8th found the topic archived, nothing to add.
		share := 1
		if scale > 1 {
			share = max(1, records/(kills+2)/n)
		}
		// Progress within each minute, not the whole share.
		for got := 0; got < share; {
			prev := got
			p.waitForLines(fmt.Sprintf("run %d's new object %d", i+1, prev+1), func(l []string) bool {
				got = newObjects(l)
				return got > prev
			})
		}
		p.signal(syscall.SIGKILL)
		p.wait()
		if scale > 1 {
			t.Logf("kill -9 %d (-n %d): %d objects", i+1, n, objects())
		}
	}
	r := run(t, nil, args("-n", strconv.Itoa(250*scale), "--until-end")...)
	if r.code != 0 {
		t.Fatalf("final run: exit %d: %s", r.code, r.stderr)
	}
	checkArchive(t, st, bkt, k.topic, int64(perPart))
	puts := putsByKey(log.String(), bkt, k.topic+"/")
	if len(puts) != len(st.keys(bkt, k.topic+"/")) {
		t.Errorf("the server's log shows PUTs of %d keys, the bucket holds %d objects", len(puts), len(st.keys(bkt, k.topic+"/")))
	}
	for key, n := range puts {
		if n != 1 {
			t.Errorf("%s written %d times", key, n)
		}
	}
	t.Logf("%d records, %d kills: %d objects, each PUT once", records, kills, len(puts))
}

// newObjects counts, in the -v lines of an s3 run, the batches delivered
// that were not found in place: the objects it wrote.
func newObjects(lines []string) int {
	n := 0
	for _, l := range lines {
		switch {
		case strings.Contains(l, "outcome=delivered"):
			n++
		case strings.Contains(l, "object found in place"):
			n--
		}
	}
	return n
}

// checkArchive checks that each partition's objects under TOPIC/PARTITION/
// follow one another from offset 0 to perPart without gap or overlap, and
// hold exactly its records, in order.
func checkArchive(t *testing.T, st *s3Test, bkt, topic string, perPart int64) {
	t.Helper()
	for _, part := range parts4 {
		prefix := fmt.Sprintf("%s/%d/", topic, part)
		keys := st.keys(bkt, prefix)
		type span struct {
			first, last int64
			key         string
		}
		var spans []span
		for _, key := range keys {
			name := strings.TrimSuffix(strings.TrimPrefix(key, prefix), ".ndjson.zst")
			a, b, _ := strings.Cut(name, "-")
			first, _ := strconv.ParseInt(a, 10, 64)
			last, _ := strconv.ParseInt(b, 10, 64)
			spans = append(spans, span{first, last, key})
		}
		slices.SortFunc(spans, func(a, b span) int { return int(a.first - b.first) })
		next := int64(0)
		for _, sp := range spans {
			if sp.first != next {
				t.Fatalf("partition %d: object %s starts at %d, want %d (a gap or an overlap)", part, sp.key, sp.first, next)
			}
			body, _ := st.get(bkt, sp.key)
			recs := strings.Split(strings.TrimSuffix(string(decompress(t, "zstd", body)), "\n"), "\n")
			for j, rec := range recs {
				if want := value(part, int(sp.first)+j); rec != want {
					t.Fatalf("partition %d: %s record %d is %.40q, want %.40q", part, sp.key, j, rec, want)
				}
			}
			if int64(len(recs)) != sp.last-sp.first+1 {
				t.Fatalf("partition %d: %s holds %d records, its name says %d", part, sp.key, len(recs), sp.last-sp.first+1)
			}
			next = sp.last + 1
		}
		if next != perPart {
			t.Errorf("partition %d: objects end at offset %d, want %d", part, next, perPart)
		}
	}
}

// The README's s3 recipes, pasted twice against the test store: only the
// store's endpoint is added, the Kafka brokers, topic and group are the
// test's, and tail -F, which never ends, is cat.
func TestS3READMERecipesTwice(t *testing.T) {
	readme := readDocs(t)
	endpoint, log := startS3ServerLog(t)
	st := newS3Test(t, endpoint)
	for _, b := range []string{"my-bucket", "logs", "archive", "events"} {
		st.bucket(b)
	}
	dir := t.TempDir()
	binDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(binDir, "batchpipe")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", binDir+":"+os.Getenv("PATH"))
	app := testLines(25000)
	if err := os.WriteFile(filepath.Join(dir, "app.log"), app, 0o644); err != nil {
		t.Fatal(err)
	}
	var events bytes.Buffer
	for i := range 3000 {
		fmt.Fprintf(&events, `{"tenant":%q,"n":%d}`+"\n", []string{"acme", "a/../b", ""}[i%3], i)
	}
	if err := os.WriteFile(filepath.Join(dir, "events.ndjson"), events.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	local := func(recipe string, more ...string) string {
		if !strings.Contains(readme, recipe) {
			t.Fatalf("not in README.md or docs/: %s", recipe)
		}
		r := strings.NewReplacer(append([]string{"tail -F app.log", "cat app.log",
			" s3 ", " s3 --endpoint " + endpoint + " --path-style "}, more...)...)
		return "exec " + r.Replace(recipe)
	}
	sh := func(cmd string) *exec.Cmd {
		c := exec.Command("sh", "-c", cmd)
		c.Dir = dir
		return c
	}
	// all reads back, in key order, every object under prefix.
	all := func(bucket, prefix string, gz bool) (n int, data []byte) {
		keys := st.keys(bucket, prefix)
		for _, k := range keys {
			b, _ := st.get(bucket, k)
			if gz {
				b = decompress(t, "gzip", b)
			}
			data = append(data, b...)
		}
		return len(keys), data
	}

	for _, rc := range []struct{ recipe, bucket, prefix string }{
		{"tail -F app.log | batchpipe -n 10000 -t 1m --retries 5 --dead-letter unsent.log \\\n  s3 --compress gzip 's3://my-bucket/logs/{date}/{run}-{seq}.log.gz'", "my-bucket", "logs/"},
		{"tail -F app.log | batchpipe -n 10000 -t 1m s3 --compress gzip 's3://logs/app/{date}/{hour}/{run}-{seq}.log.gz'", "logs", "app/"},
	} {
		for i := range 2 {
			out, err := sh(local(rc.recipe)).CombinedOutput()
			keepOutput(string(out))
			if err != nil {
				t.Fatalf("%s: %v: %s", rc.recipe, err, out)
			}
			n, data := all(rc.bucket, rc.prefix, true)
			// Keys sort by {run}, then {seq} below 10: each run's bytes follow.
			if n != 3*(i+1) || !bytes.Equal(data, bytes.Repeat(app, i+1)) {
				t.Errorf("%s: run %d: %d objects, %d bytes; want %d objects of the log's bytes", rc.recipe, i+1, n, len(data), 3*(i+1))
			}
		}
	}

	keyed := "batchpipe --partition-by '{json:tenant}' -n 5000 -t 1m \\\n  s3 's3://events/{key}/{date}/{run}-{seq}.ndjson' < events.ndjson"
	for i := range 2 {
		out, err := sh(local(keyed)).CombinedOutput()
		keepOutput(string(out))
		if err != nil {
			t.Fatalf("%s: %v: %s", keyed, err, out)
		}
		for tenant, prefix := range map[string]string{"acme": "acme/", "a/../b": "a%2F..%2Fb/", "": "%/"} {
			n, data := all("events", prefix, false)
			if got := bytes.Count(data, []byte(`"tenant":`+strconv.Quote(tenant))); n != i+1 || got != 1000*(i+1) {
				t.Errorf("tenant %q: run %d: %d objects under %s with %d of its events, want %d and %d", tenant, i+1, n, prefix, got, i+1, 1000*(i+1))
			}
		}
	}

	k := newKafka(t, 4)
	pr := newProducer(t, k.addr)
	archive := archiveRecipe
	for i := range 2 {
		pr.produce(k.topic, parts4, 1500)
		p := startCmd(t, sh(local(archive, "localhost:9092", k.addr, "--topic orders", "--topic "+k.topic, "--group archive", "--group "+k.group)))
		records := func() int {
			n := 0
			for _, key := range st.keys("archive", k.topic+"/") {
				b, _ := st.get("archive", key)
				d, err := zstd.NewReader(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(d)
				d.Close()
				if err != nil {
					t.Fatal(err)
				}
				n += bytes.Count(data, []byte("\n"))
			}
			return n
		}
		kafkatest.Eventually(t, "every record archived", func() bool { return records() == 4*1500*(i+1) })
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 143 {
			t.Fatalf("%s: exit %d after SIGTERM, want 143: %s", archive, code, p.stderr())
		}
	}
	for key, n := range putsByKey(log.String(), "archive", k.topic+"/") {
		if n != 1 {
			t.Errorf("%s written %d times", key, n)
		}
	}
}

// archiveRecipe is the docs' Kafka topic archived exactly once.
const archiveRecipe = "batchpipe --kafka-brokers localhost:9092 --topic orders --group archive --exactly-once \\\n  s3 --compress zstd 's3://archive/{topic}/{partition}/{first_offset}-{last_offset}.ndjson.zst'"

// The docs' read-back of the Kafka archive with ClickHouse's s3() table
// function (recipe s3-clickhouse), its query run by chdb (ClickHouse as a
// Python module, which .ci/run installs) against the test store, twice,
// each time after more records were archived: it reads every object the
// archive recipe wrote, zstd by its key's .zst, and every record whole.
func TestS3ReadBackWithClickHouse(t *testing.T) {
	if out, err := exec.Command("python3", "-c", "import chdb").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chdb is needed to read the archive back with ClickHouse (pip install chdb-core-lite): %v: %s", err, out)
		}
		t.Skipf("no chdb to read the archive back with ClickHouse (pip install chdb-core-lite): %s", out)
	}
	docs := readDocs(t)
	if !strings.Contains(docs, archiveRecipe) {
		t.Fatalf("not in the docs: %s", archiveRecipe)
	}
	_, query, _ := strings.Cut(docs, "\nclickhouse local -q \"")
	query, _, ok := strings.Cut(query, "\"\n")
	const url = "https://archive.s3.amazonaws.com/orders/"
	if !ok || !strings.Contains(query, url) {
		t.Fatalf("no clickhouse local -q \"... %s...\" in the docs", url)
	}
	endpoint := startS3Server(t)
	st := newS3Test(t, endpoint)
	st.bucket("archive")
	k := newKafka(t, 4)
	pr := newProducer(t, k.addr)
	binDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(binDir, "batchpipe")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", binDir+":"+os.Getenv("PATH"))
	// The recipe as pasted, but for the store, the broker, topic and group,
	// and --until-end, for it to end.
	recipe := strings.NewReplacer("localhost:9092", k.addr, "--topic orders", "--topic "+k.topic,
		"--group archive", "--group "+k.group, "--exactly-once", "--exactly-once --until-end",
		" s3 ", " s3 --endpoint "+endpoint+" --path-style ").Replace(archiveRecipe)
	q := strings.Replace(query, url, endpoint+"/archive/"+k.topic+"/", 1)
	py := `import sys, chdb
print(chdb.query(sys.argv[1], "CSV"), end="")
print(chdb.query(sys.argv[1].replace("count()", "sum(cents)", 1), "CSV"), end="")`
	const n = 4000
	count, cents := 0, 0
	for range 2 {
		var msgs []*sarama.ProducerMessage
		for range n {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: k.topic, Partition: int32(count % 4),
				Value: sarama.StringEncoder(fmt.Sprintf(`{"order":%d,"cents":%d}`, count, count%1000))})
			cents += count % 1000
			count++
		}
		if err := pr.p.SendMessages(msgs); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", "exec "+recipe).CombinedOutput()
		keepOutput(string(out))
		if err != nil {
			t.Fatalf("%s: %v: %s", recipe, err, out)
		}
		got, err := exec.Command("python3", "-c", py, q).CombinedOutput()
		if err != nil {
			t.Fatalf("chdb: %s: %v: %s", q, err, got)
		}
		if want := fmt.Sprintf("%d\n%d\n", count, cents); string(got) != want {
			t.Fatalf("chdb: %s:\ngot  %q\nwant %q (count and sum(cents))", q, got, want)
		}
	}
}

func TestS3Usage(t *testing.T) {
	kafka := []string{"--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--group", "g", "--exactly-once"}
	checkUsage(t, []usageCase{
		{[]string{"s3"}, "give one s3://BUCKET/KEY-TEMPLATE"},
		{[]string{"s3", "bucket/key"}, "is not s3://BUCKET/KEY-TEMPLATE"},
		{[]string{"s3", "s3://bucket/"}, "names no object"},
		{[]string{"s3", "s3://bucket/{run}.log"}, "put {seq} in it"},
		{[]string{"s3", "s3://bucket/{nope}"}, "unknown placeholder {nope}"},
		{[]string{"s3", "s3://bucket/{partition}/{seq}"}, "{topic} and {partition} are those of Kafka records"},
		{append(kafka, "s3", "s3://bucket/{run}-{batch_id}"), "{run} differs when a batch is formed again"},
		{append(kafka, "s3", "s3://bucket/{seq}"), "name batches by {batch_id}"},
		{[]string{"s3", "--compress", "lz4", "s3://bucket/{seq}"}, "takes gzip, zstd or none"},
		{[]string{"s3", "--part-size", "1M", "s3://bucket/{seq}"}, "--part-size must be at least 5MiB"},
		{[]string{"s3", "--if-exists", "maybe", "s3://bucket/{seq}"}, "--if-exists takes fail, skip-same or overwrite"},
		{[]string{"http", "--gzip", "--compress", "zstd", "http://localhost/"}, "--gzip is --compress gzip"},
	})
}

// Two members archive a topic; one is stopped (SIGSTOP) past its session
// timeout, its partitions go to the other, and then it is continued, a
// zombie with uploads in flight. Its late writes meet the create-only
// condition: still no key is written twice, and the archive is exact.
func TestS3KafkaExactlyOnceStoppedMember(t *testing.T) {
	endpoint, log := startS3ServerLog(t)
	st := newS3Test(t, endpoint)
	bkt := st.bucket("zombie")
	k := newKafka(t, 4)
	const perPart = 20000
	newProducer(t, k.addr).produce(k.topic, parts4, perPart)
	args := func(n string) []string {
		return append([]string{"-v", "--kafka-brokers", k.addr, "--topic", k.topic, "--group", k.group, "--exactly-once",
			"-n", n, "-j", "4", "--commit-interval", "20ms", "--kafka-session-timeout", "1s"},
			st.s3("--compress", "zstd", "s3://"+bkt+"/{topic}/{partition}/{first_offset}-{last_offset}.ndjson.zst")...)
	}
	p1 := start(t, args("100")...)
	p1.waitFor("kafka: assigned")
	p2 := start(t, args("333")...)
	p1.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })
	p2.waitForLines("a share of two partitions", func(l []string) bool { return assignedCount(l) == 2 })
	p1.waitForLines("p1 delivering its two partitions", func(l []string) bool { return deliveredSinceAssigned(l) >= 3 })
	p1.signal(syscall.SIGSTOP)
	p2.waitForLines("all four partitions", func(l []string) bool { return assignedCount(l) == 4 })
	p1.signal(syscall.SIGCONT)
	// Back, p1 rejoins and may be given partitions again: the two
	// finish the topic between them.
	kafkatest.Eventually(t, "every partition archived to its end", func() bool {
		for _, part := range parts4 {
			if !slices.ContainsFunc(st.keys(bkt, fmt.Sprintf("%s/%d/", k.topic, part)), func(key string) bool {
				return strings.HasSuffix(key, fmt.Sprintf("-%d.ndjson.zst", perPart-1))
			}) {
				return false
			}
		}
		return true
	})
	p1.signal(syscall.SIGTERM)
	p2.signal(syscall.SIGTERM)
	for _, p := range []*proc{p1, p2} {
		if code := p.wait(); code != 143 {
			t.Fatalf("exit %d, want 143:\n%s", code, p.stderr())
		}
	}
	checkArchive(t, st, bkt, k.topic, perPart)
	puts := putsByKey(log.String(), bkt, k.topic+"/")
	for key, n := range puts {
		if n != 1 {
			t.Errorf("%s written %d times", key, n)
		}
	}
	if len(puts) != len(st.keys(bkt, k.topic+"/")) {
		t.Errorf("the server's log shows PUTs of %d keys, the bucket holds %d objects", len(puts), len(st.keys(bkt, k.topic+"/")))
	}
}
