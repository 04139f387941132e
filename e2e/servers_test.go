package e2e

// Helpers for the servers batchpipe delivers to: an HTTP sink that records
// what it was sent, and moto's S3 server with a client to read it back.

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// httpSink is a test endpoint: respond decides each answer (2xx if it
// returns 0 without writing); the records of 2xx bodies are counted.
type httpSink struct {
	*httptest.Server
	respond func(w http.ResponseWriter, r *http.Request, body []byte) int

	mu       sync.Mutex
	got      map[string]int // record → times received in a 2xx body
	requests int
	statuses map[int]int // answers given, 0 for none
}

func newHTTPSink(t *testing.T, tlsConf func(*httptest.Server), respond func(w http.ResponseWriter, r *http.Request, body []byte) int) *httpSink {
	s := &httpSink{respond: respond, got: map[string]int{}, statuses: map[int]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // dropped connections on purpose
	if tlsConf != nil {
		tlsConf(s.Server)
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *httpSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client gave up
	}
	code := http.StatusOK
	if s.respond != nil {
		code = s.respond(w, r, body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.statuses[code]++
	if code >= 200 && code < 300 {
		for l := range bytes.Lines(body) {
			s.got[string(l)]++
		}
	}
}

// missing returns the records of input never received in a 2xx body.
func (s *httpSink) missing(input string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m []string
	for l := range strings.Lines(input) {
		if s.got[l] == 0 {
			m = append(m, l)
		}
	}
	return m
}

func (s *httpSink) count(code int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statuses[code]
}

// The credentials the s3 tests give batchpipe: neither may appear in any
// output.
const (
	s3TestKeyID  = "AKIDE2ETESTKEY7Q"
	s3TestSecret = "s3-e2e-secret-Zq8vLw3nX"
)

// syncBuffer is a bytes.Buffer safe to write and read at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startS3Server starts moto's S3 server (PyPI's moto[server], which .ci/run
// installs) on a free port and returns its URL. env is added to its
// environment. Missing, the test is skipped, or fails in CI.
func startS3Server(t *testing.T, env ...string) string {
	u, _ := startS3ServerLog(t, env...)
	return u
}

// startS3ServerLog is startS3Server that also returns the server's log: a
// line per request, with its status.
func startS3ServerLog(t *testing.T, env ...string) (string, *syncBuffer) {
	t.Helper()
	path, err := exec.LookPath("moto_server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("moto_server is not installed (pip install 'moto[server]')")
		}
		t.Skip("moto_server is not installed (pip install 'moto[server]')")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	c := exec.Command(path, "-H", "127.0.0.1", "-p", port)
	c.Env = append(os.Environ(), env...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log := &syncBuffer{}
	c.Stdout, c.Stderr = log, log
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { c.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	u := "http://127.0.0.1:" + port
	// Ready once it answers; a tick between tries.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for {
		if resp, err := http.Get(u + "/moto-api/"); err == nil {
			resp.Body.Close()
			return u, log
		}
		select {
		case <-tick.C:
		case <-exited:
			t.Fatalf("moto_server exited: %s", log.String())
		case <-deadline:
			t.Fatalf("moto_server did not answer within a minute: %s", log.String())
		}
	}
}

// s3Setenv points the SDK in batchpipe at the test credentials, and away
// from any file or instance metadata.
func s3Setenv(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": s3TestKeyID, "AWS_SECRET_ACCESS_KEY": s3TestSecret,
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_REGION": "us-east-1",
		"AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE":           filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
	} {
		t.Setenv(k, v)
	}
	secretsMu.Lock()
	defer secretsMu.Unlock()
	if !slices.Contains(testSecrets, s3TestSecret) {
		testSecrets = append(testSecrets, s3TestSecret, s3TestKeyID)
	}
}

// s3Test is a client of the test store, to set it up and read back.
type s3Test struct {
	t        *testing.T
	endpoint string
	c        *s3.Client
}

func newS3Test(t *testing.T, endpoint string) *s3Test {
	s3Setenv(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	c := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3TestKeyID, s3TestSecret, ""),
		HTTPClient:   &http.Client{Transport: tr},
	})
	t.Cleanup(tr.CloseIdleConnections)
	return &s3Test{t: t, endpoint: endpoint, c: c}
}

func (s *s3Test) bucket(name string) string {
	s.t.Helper()
	if _, err := s.c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		s.t.Fatal(err)
	}
	return name
}

// keys lists the bucket's keys under prefix, in S3's order.
func (s *s3Test) keys(bucket, prefix string) []string {
	s.t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			s.t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

func (s *s3Test) get(bucket, key string) ([]byte, *s3.GetObjectOutput) {
	s.t.Helper()
	out, err := s.c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		s.t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return b, out
}

// bySeq sorts keys ending in -SEQ.EXT or /SEQ.EXT by SEQ.
func bySeq(keys []string) []string {
	seq := func(k string) int {
		k = k[strings.LastIndexAny(k, "-/")+1:]
		k, _, _ = strings.Cut(k, ".")
		n, _ := strconv.Atoi(k)
		return n
	}
	slices.SortFunc(keys, func(a, b string) int { return seq(a) - seq(b) })
	return keys
}

func (s *s3Test) s3(args ...string) []string {
	return append([]string{"s3", "--endpoint", s.endpoint, "--path-style"}, args...)
}

// putsByKey counts, from moto's log, the PUTs under /bucket/prefix that
// succeeded (200), by key.
func putsByKey(log, bucket, prefix string) map[string]int {
	puts := map[string]int{}
	for l := range strings.Lines(log) {
		_, req, ok := strings.Cut(l, `"PUT /`+bucket+"/"+prefix)
		if !ok {
			continue
		}
		path, rest, _ := strings.Cut(req, " HTTP/1.1\" ")
		if strings.HasPrefix(rest, "200 ") {
			puts[prefix+path]++
		}
	}
	return puts
}
