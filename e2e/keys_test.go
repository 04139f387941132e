package e2e

// End-to-end tests of what untrusted keys may become: URL path segments
// and file names.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hostileKeys are keys that a URL or a file name must not resolve: dot
// segments, the empty key, and encodings of them and of '/'.
var hostileKeys = []string{"..", ".", "", "..%2Fadmin", "a/b", "a%2Fb", "%2e%2e", "%2E", "a b"}

// hostileInput gives each key of keys two records "KEY\tKEY-rN", one batch.
func hostileInput(keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		for n := range 2 {
			fmt.Fprintf(&b, "%s\t%s-r%d\n", k, k, n)
		}
	}
	return b.String()
}

// keyFromSegment recovers a key from its URL path segment as a server sees
// it once decoded: decoded once more, "%" alone being the empty key.
func keyFromSegment(seg string) (string, error) {
	if seg == "%" {
		return "", nil
	}
	return url.PathUnescape(seg)
}

// tenantServer records, for each request to /tenants/{key}/ingest, the key
// recovered from the segment, and the body. Any other path is a 404.
type tenantServer struct {
	mu     sync.Mutex
	bodies map[string]string // key → bodies received
	bad    []string          // what went wrong, in the server's words
}

func newTenantServer() *tenantServer { return &tenantServer{bodies: map[string]string{}} }

func (s *tenantServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /tenants/{key}/ingest", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		defer s.mu.Unlock()
		key, err := keyFromSegment(r.PathValue("key"))
		if err != nil {
			s.bad = append(s.bad, fmt.Sprintf("%s: %v", r.URL.EscapedPath(), err))
			http.Error(w, "bad key", http.StatusBadRequest)
			return
		}
		// Behind nginx: what it routed on, once decoded and normalized.
		if u := r.Header.Get("X-Normalized-Uri"); u != "" && u != "/tenants/"+r.PathValue("key")+"/ingest" {
			s.bad = append(s.bad, fmt.Sprintf("nginx saw %q for %q", u, r.URL.EscapedPath()))
		}
		s.bodies[key] += string(body)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.bad = append(s.bad, "reached "+r.URL.EscapedPath())
		s.mu.Unlock()
		http.NotFound(w, r)
	})
	return mux
}

// check wants each key's records at that key, and nothing else.
func (s *tenantServer) check(t *testing.T, keys []string, r result) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.code != 0 {
		t.Errorf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	for _, b := range s.bad {
		t.Error(b)
	}
	for _, k := range keys {
		want := fmt.Sprintf("%s\t%s-r0\n%s\t%s-r1\n", k, k, k, k)
		if got := s.bodies[k]; got != want {
			t.Errorf("key %q: received %q, want %q", k, got, want)
		}
	}
	if len(s.bodies) != len(keys) {
		t.Errorf("%d keys received, want %d", len(s.bodies), len(keys))
	}
}

// runTenants sends each hostile key's batch to base/tenants/{key}/ingest;
// a batch refused is dead-lettered, so that every key is tried.
func runTenants(t *testing.T, base string) result {
	return run(t, strings.NewReader(hostileInput(hostileKeys)), "--partition-by", "{field:1}", "-n", "2", "-t", "0",
		"--retries", "0", "--dead-letter", filepath.Join(t.TempDir(), "dead"), "http", base+"/tenants/{key}/ingest")
}

// Keys in a URL path stay one segment each, told apart, through Go's
// ServeMux, which redirects dot segments and empty ones.
func TestHTTPKeyInURLPathServeMux(t *testing.T) {
	s := newTenantServer()
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	s.check(t, hostileKeys, runTenants(t, srv.URL))
}

// The same through nginx, which decodes %XX, %2E and %2F included, before
// it resolves dot segments, and routes only /tenants/ONE-SEGMENT/ingest.
func TestHTTPKeyInURLPathNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx" // not in a user's PATH on Debian
		if _, err := os.Stat(nginx); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("nginx is not installed (apt-get install nginx-light)")
			}
			t.Skip("nginx is not installed")
		}
	}
	s := newTenantServer()
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	addr := startNginx(t, nginx, `
		location ~ ^/tenants/[^/]+/ingest$ {
			proxy_pass http://`+srv.Listener.Addr().String()+`;
			proxy_set_header X-Normalized-Uri $uri;
		}
		location / { return 418; }`)
	s.check(t, hostileKeys, runTenants(t, "http://"+addr))
}

// startNginx runs nginx in the foreground with locations in its one server,
// on a free port, and returns its address once it accepts connections.
func startNginx(t *testing.T, nginx, locations string) string {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := fmt.Sprintf(`
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
worker_processes 1;
events { worker_connections 64; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s;
		%[3]s
	}
}
`, dir, addr, locations)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := exec.CommandContext(ctx, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	// SIGTERM: nginx stops its worker too, which SIGKILL would orphan.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 10 * time.Second
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = c.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	// Ready once it accepts a connection: poll, as nginx says nothing.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s", waitErr, log)
		case <-deadline:
			t.Fatal("nginx did not listen within 30s")
		case <-tick.C:
		}
	}
}

// A symbolic link planted at out/<key> does not take that key's batches
// where it points: the batch fails naming the link, other keys land, and
// --follow-symlinks writes through it.
func TestPerBatchPlantedSymlinkRefused(t *testing.T) {
	for _, follow := range []bool{false, true} {
		dir, elsewhere := t.TempDir(), t.TempDir()
		out := filepath.Join(dir, "out")
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(elsewhere, filepath.Join(out, "victim")); err != nil {
			t.Fatal(err)
		}
		args := []string{"--partition-by", "{field:1}", "-n", "1", "--dead-letter", filepath.Join(dir, "dead")}
		if follow {
			args = append(args, "--follow-symlinks")
		}
		r := run(t, strings.NewReader("victim\tv\nother\to\n"), append(args, "file", "--per-batch", filepath.Join(out, "{key}", "{seq}"))...)
		landed, _ := os.ReadDir(elsewhere)
		if b, err := os.ReadFile(filepath.Join(out, "other", "2")); err != nil || string(b) != "other\to\n" {
			t.Errorf("follow %v: the other key: %q, %v; stderr:\n%s", follow, b, err, r.stderr)
		}
		if follow {
			if r.code != 0 || len(landed) != 1 {
				t.Errorf("--follow-symlinks: exit %d, %d files through the link, want 0 and 1; stderr:\n%s", r.code, len(landed), r.stderr)
			}
			continue
		}
		if r.code != 3 || len(landed) != 0 || !strings.Contains(r.stderr, filepath.Join(out, "victim")+": is a symbolic link") {
			t.Errorf("exit %d, %d files through the link, want 3, 0 and an error naming the link; stderr:\n%s", r.code, len(landed), r.stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "dead")); string(b) != "victim\tv\n" {
			t.Errorf("dead letters %q, want the victim's record", b)
		}
	}
}

// Keys too long for a file name (10 KB, or 100 × '/', which escapes to 300
// bytes) land under a short form of their own.
func TestPerBatchOverlongKeysLand(t *testing.T) {
	out := t.TempDir()
	long := strings.Repeat("k", 10<<10)
	keys := []string{long, long[:len(long)-1] + "j", strings.Repeat("/", 100), strings.Repeat("/", 99) + "."}
	var in strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&in, "%s\t%d\n", k, len(k))
	}
	r := run(t, strings.NewReader(in.String()), "--partition-by", "{field:1}", "file", "--per-batch", filepath.Join(out, "{key}-{seq}.log"))
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	files, _ := os.ReadDir(out)
	if len(files) != len(keys) {
		t.Fatalf("%d files, want %d", len(files), len(keys))
	}
	got := map[string]bool{}
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(out, f.Name()))
		got[string(b)] = true
		if !strings.Contains(f.Name(), "%~") {
			t.Errorf("%s: no short form", f.Name())
		}
	}
	for _, k := range keys {
		if !got[fmt.Sprintf("%s\t%d\n", k, len(k))] {
			t.Errorf("the key of %d bytes %.12q… did not land in a file of its own", len(k), k)
		}
	}
}
