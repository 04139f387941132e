package sinks

// The http sink at start: the URL, headers, TLS and client that NewHTTP
// checks and builds before any input is read.

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/batchpipe/batchpipe/internal/tlsfiles"
)

// NewHTTP checks cfg and prepares the client. Its errors are usage errors,
// found before any input is read.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = 1
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("http sink: timeout must be positive, not %v", cfg.Timeout)
	}
	if cfg.Format >= numFormats {
		return nil, fmt.Errorf("http sink: unknown format %v", cfg.Format)
	}
	ut, u, endpoint, err := parseHTTPURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if _, err := http.NewRequest(cfg.Method, "http://localhost/", nil); err != nil {
		return nil, fmt.Errorf("http sink: method %q is not a valid HTTP method", cfg.Method)
	}
	tlsConf, err := cfg.tlsConfig(u.Scheme == "https")
	if err != nil {
		return nil, err
	}
	header, hdrs, host, err := cfg.headers()
	if err != nil {
		return nil, err
	}
	return &HTTP{
		url:      ut,
		hdrs:     hdrs,
		endpoint: endpoint,
		method:   cfg.Method,
		host:     host,
		header:   header,
		format:   cfg.Format,
		compress: cfg.Compress,
		timeout:  cfg.Timeout,
		client: &http.Client{
			Transport: newHTTPTransport(tlsConf, cfg.Parallel),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		now:  time.Now,
		red:  newRedactor(cfg.Header, secretURL(ut, u)),
		log:  cfg.Logger,
		slow: cmp.Or(cfg.SlowAfter, 5*time.Second),
	}, nil
}

// parseHTTPURL parses the URL template raw and checks the URL it renders
// to; endpoint names it in errors, without user info, path or query.
func parseHTTPURL(raw string) (ut *Template, u *url.URL, endpoint string, err error) {
	ut, err = ParseTemplate(raw, true)
	if err != nil {
		return nil, nil, "", fmt.Errorf("http sink: URL: %w", err)
	}
	u, err = url.Parse(string(ut.renderURL(nil, sampleValues)))
	if err != nil {
		// url.Error quotes the whole URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, "", fmt.Errorf("http sink: bad URL: %v", err)
	}
	endpoint = redactURL(u)
	switch {
	case !strings.Contains(raw, "://"):
		// "localhost:8080/x" parses as scheme "localhost": name the host
		// as given, without user info, path or query.
		host, _, _ := strings.Cut(raw, "/")
		if i := strings.LastIndexByte(host, '@'); i >= 0 {
			host = host[i+1:]
		}
		host, _, _ = strings.Cut(host, "?")
		return nil, nil, "", fmt.Errorf("http sink: URL has no http:// or https:// in front: give http://%s/… or https://%s/…", host, host)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, nil, "", fmt.Errorf("http sink: URL %s: want an http:// or https:// URL", endpoint)
	case u.Host == "":
		return nil, nil, "", fmt.Errorf("http sink: URL %s has no host", endpoint)
	case u.Fragment != "":
		return nil, nil, "", fmt.Errorf("http sink: URL %s has a #fragment, which is never sent", endpoint)
	}
	return ut, u, endpoint, nil
}

// headers returns the headers every request carries, with the content
// type, encoding and user agent set; hdrs are the values with placeholders,
// rendered per batch, and host the Host header, which goes in
// Request.Host. It sets cfg.Compress from --gzip.
func (cfg *HTTPConfig) headers() (header http.Header, hdrs []hdrTemplate, host string, err error) {
	header = cfg.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	for name, vals := range header {
		for i, v := range vals {
			t, _ := ParseTemplate(v, false) // lenient: never fails
			if !t.Static() {
				hdrs = append(hdrs, hdrTemplate{name: name, i: i, t: t})
			}
		}
	}
	host = header.Get("Host")
	header.Del("Host") // the client ignores it: it goes in Request.Host
	switch {
	case cfg.ContentType != "" && header.Get("Content-Type") != "":
		return nil, nil, "", errors.New("http sink: the content type is given twice: as a header and with --content-type")
	case cfg.ContentType != "":
		header.Set("Content-Type", cfg.ContentType)
	case header.Get("Content-Type") == "":
		header.Set("Content-Type", cfg.Format.ContentType())
	}
	flag := "--compress"
	if cfg.Gzip && !cfg.Compress.On() {
		cfg.Compress, _ = ParseCompression("gzip")
		flag = "--gzip"
	}
	if cfg.Compress.On() {
		if header.Get("Content-Encoding") != "" {
			return nil, nil, "", fmt.Errorf("http sink: %s sets Content-Encoding: give no such header", flag)
		}
		header.Set("Content-Encoding", cfg.Compress.Encoding())
	}
	if header.Get("User-Agent") == "" {
		header.Set("User-Agent", cmp.Or(cfg.UserAgent, "batchpipe"))
	}
	return header, hdrs, host, nil
}

// newHTTPTransport returns the transport of a sink with parallel workers.
func newHTTPTransport(tlsConf *tls.Config, parallel int) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// One idle connection kept per worker: the default of 2 would make
		// -j 4 open and close a connection per request.
		MaxIdleConns:        parallel + 4,
		MaxIdleConnsPerHost: parallel + 4,
		// A typical batch and its headers then go out in one write, not
		// in 32 KiB pieces through a buffer allocated per request.
		WriteBufferSize: 256 << 10,
	}
}

// secretURL is the URL template with placeholderMark for each placeholder,
// for the redactor to tell the parts a batch's values make; u if it does
// not parse.
func secretURL(t *Template, u *url.URL) *url.URL {
	if m, err := url.Parse(string(t.renderURL(nil, markValues))); err == nil {
		return m
	}
	return u
}

func (cfg *HTTPConfig) tlsConfig(https bool) (*tls.Config, error) {
	switch {
	case !https && (cfg.CACert != "" || cfg.Cert != "" || cfg.Key != "" || cfg.Insecure):
		return nil, errors.New("http sink: --cacert, --cert, --key and --insecure need an https:// URL")
	case !https:
		return nil, nil
	case (cfg.Cert == "") != (cfg.Key == ""):
		return nil, errors.New("http sink: --cert and --key go together")
	case cfg.Insecure && cfg.CACert != "":
		return nil, errors.New("http sink: --insecure and --cacert contradict each other: give one")
	}
	c, err := tlsfiles.Config(cfg.CACert, cfg.Cert, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("http sink: %w", err)
	}
	c.InsecureSkipVerify = cfg.Insecure
	return c, nil
}

// redactURL names an endpoint without what may be secret: the password in
// the user info, and tokens that some services put in the path or query
// (webhook URLs, api_key=).
func redactURL(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Opaque != "" {
		s += "/…"
	}
	return s
}

// ParseHeader splits a 'Name: value' header as given to -H. Its errors
// never quote the value, which may be a token.
func ParseHeader(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", errors.New("want 'Name: value', found no colon")
	}
	name = strings.TrimSpace(name)
	if !isToken(name) {
		return "", "", fmt.Errorf("%q is not a valid header name", name)
	}
	value = strings.TrimSpace(value)
	if i := strings.IndexFunc(value, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }); i >= 0 {
		return "", "", fmt.Errorf("the value of %s holds a control character (%q), which no server accepts", name, value[i])
	}
	return name, value, nil
}

// isToken reports whether s is an RFC 9110 token, as header names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
