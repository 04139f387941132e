package sinks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// HTTPConfig configures an HTTP sink. A zero field means the default given
// beside it.
type HTTPConfig struct {
	// URL is the http or https endpoint. Placeholders in it (see
	// PlaceholderHelp) are replaced by the batch's values: in the path
	// escaped as file names are, then percent-encoded (segmentEscape), in
	// the query percent-encoded;
	// the parts of a batch split after a 413 get {seq}-1 and {seq}-2 (and
	// so on down), so they do not overwrite each other. User info
	// (user:password@) is sent as basic auth.
	URL string

	Method string // default POST
	// Header is sent with every request; a Host entry sets the Host.
	// Placeholders in values are replaced by the batch's, control bytes
	// and '%' in them percent-encoded; other braces stay as they are.
	Header      http.Header
	Format      Format // body format; default Lines
	ContentType string // default: the format's; conflicts with a Content-Type header
	Gzip        bool   // compress bodies and send Content-Encoding: gzip
	UserAgent   string // unless Header has one; default "batchpipe"

	// Compress is gzip or zstd, sent as Content-Encoding; Gzip is gzip.
	Compress Compression

	// Timeout bounds each request, from connecting to reading the
	// response. Default 30s.
	Timeout time.Duration
	// Parallel is how many requests may be in flight (-j), to size the
	// pool of kept-alive connections. Default 1.
	Parallel int

	// Logger, if set, is told of a request with no answer after
	// SlowAfter (default 5s), so a server that never answers is not met
	// with silence until --timeout.
	Logger    *slog.Logger
	SlowAfter time.Duration

	CACert   string // PEM file of the CAs to trust instead of the system roots
	Cert     string // PEM client certificate, for mutual TLS; needs Key
	Key      string // PEM private key of Cert
	Insecure bool   // do not verify the server's certificate
}

// HTTP sends each batch as the body of one request.
//
// A 2xx response is success. Connection errors, timeouts, 408, 429 and 5xx
// other than 501 and 505 are retried, after the response's Retry-After if
// it has one; any other status is permanent. A 413 splits the batch in
// half and sends each half, down to single records, which are rejected if
// still too large. Redirects are not followed: a 3xx is permanent, as a
// POST turned into a GET would count as delivered.
//
// Errors name the endpoint as scheme://host/… so that passwords and
// tokens in the URL stay out of logs; header values never appear.
type HTTP struct {
	url      *Template
	hdrs     []hdrTemplate // header values with placeholders
	endpoint string        // for errors: without user info, path or query
	method   string
	host     string // a Host header
	header   http.Header
	format   Format
	compress Compression
	timeout  time.Duration
	client   *http.Client
	now      func() time.Time // for Retry-After dates
	log      *slog.Logger
	slow     time.Duration

	red *redactor // cuts header values and URL parts out of what a server says

	scratch sync.Pool // *scratch
}

var (
	_ batcher.Sink   = (*HTTP)(nil)
	_ batcher.Closer = (*HTTP)(nil)
)

// A hdrTemplate is a header value with placeholders: value i of name.
type hdrTemplate struct {
	name string
	i    int
	t    *Template
}

// Deliver sends b as one request, or as several if the server says it is
// too large.
func (s *HTTP) Deliver(ctx context.Context, b *batcher.Batch) error {
	part := ""
	if b.Picked() && b.Attempt > 1 {
		// What parts of a split batch left, sent again: a {seq} name of its
		// own, so as not to replace a part that went through.
		part = "-r" + strconv.Itoa(b.Attempt)
	}
	rej, err := s.send(ctx, b, 0, part, false)
	if err != nil {
		return err
	}
	if len(rej) > 0 {
		// In input order, as they will be dead-lettered.
		slices.SortFunc(rej, func(a, b batcher.Rejected) int { return cmp.Compare(a.Index, b.Index) })
		return &batcher.RejectError{Records: rej}
	}
	return nil
}

// send posts b, which starts at record base of the batch given to Deliver,
// and returns the records rejected, by index in that batch. A 413 splits b;
// part is the {seq} suffix of the part it is. Once split, a failure of one
// part rejects just its records, since other parts may have been delivered
// already: for good if the failure is permanent, else to be sent again.
func (s *HTTP) send(ctx context.Context, b *batcher.Batch, base int, part string, split bool) ([]batcher.Rejected, error) {
	sc := s.getScratch()
	// Lines are the batch's own bytes, not a copy, which would double the
	// memory a slow server holds: post then returns only once the
	// transport is done with them. Other formats are encoded into sc.
	inPlace := s.format == Lines
	var body []byte
	var rej []batcher.Rejected
	if inPlace {
		body = b.Bytes()
	} else {
		body, rej = s.format.Encode(sc.body[:0], b)
		sc.body = body
	}
	for i := range rej {
		rej[i].Index += base
	}
	if len(rej) == b.Len() {
		s.putScratch(sc)
		return rej, nil
	}
	// A part of a split batch has its own offsets, and so its own
	// {batch_id}: a receiver that drops a key seen before keeps both.
	v := BatchValues(b, s.now())
	v.SetSeq(strconv.FormatInt(b.Seq, 10) + part)
	u := string(s.url.renderURL(nil, v))
	status, err := s.post(ctx, sc, u, v, body, inPlace)
	switch {
	case err == nil:
		return rej, nil
	case status != http.StatusRequestEntityTooLarge:
		if split {
			return rejectRest(b, base, rej, err), nil
		}
		return nil, err
	}

	// 413: halve, unless a single record is left (format rejects aside).
	n := b.Len()
	if n-len(rej) == 1 {
		i := 0
		for j := range rej {
			if rej[j].Index-base == i {
				i++
			}
		}
		return append(rej, batcher.Rejected{Index: base + i,
			Err: fmt.Errorf("%s (%d bytes) is too large for the endpoint: %w", recordName(b, i), len(b.Record(i)), err)}), nil
	}
	mid := n / 2
	r1, err := s.send(ctx, b.Slice(0, mid), base, part+"-1", true)
	if err != nil {
		return nil, err
	}
	r2, err := s.send(ctx, b.Slice(mid, n), base+mid, part+"-2", true)
	if err != nil {
		return nil, err
	}
	return append(r1, r2...), nil
}

// rejectRest adds to rej, which is in index order, every other record of b.
func rejectRest(b *batcher.Batch, base int, rej []batcher.Rejected, err error) []batcher.Rejected {
	all := make([]batcher.Rejected, 0, b.Len())
	for i := range b.Len() {
		if len(rej) > 0 && rej[0].Index == base+i {
			all = append(all, rej[0])
			rej = rej[1:]
			continue
		}
		all = append(all, batcher.Rejected{Index: base + i, Err: err, Again: !batcher.IsPermanent(err)})
	}
	return all
}

// post makes one request and returns the response's status (0 if none).
// It takes sc, whose memory holds body unless inPlace, and returns it to
// the pool once the transport is done with it. A body inPlace (the batch's
// memory) is waited for: post returns only once the transport closed it.
func (s *HTTP) post(ctx context.Context, sc *scratch, u string, v *Values, body []byte, inPlace bool) (int, error) {
	if s.compress.On() {
		inPlace = false // compressed into sc

		var err error
		if sc.gz, err = s.compress.Append(sc.gz[:0], body); err != nil {
			s.putScratch(sc)
			return 0, fmt.Errorf("http sink: %w", err)
		}
		body = sc.gz
	}
	// The transport may still read the body after Do returns, when the
	// response or an error comes before the body is sent. So sc goes back
	// to the pool only if the trace says the body was sent in full, which
	// happens last as there is no GetBody to send it again; otherwise it is
	// left to the garbage collector.
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			sent.Store(true)
		}
	}}
	rctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), s.timeout)
	var closed chan struct{} // closed with the body, when inPlace
	defer func() {
		cancel()
		if closed != nil {
			<-closed // the transport closes the body whatever happens
		}
		if sent.Load() {
			s.putScratch(sc)
		}
	}()
	req, err := http.NewRequestWithContext(rctx, s.method, u, nil)
	if err != nil {
		return 0, batcher.Permanent(s.requestError(ctx, rctx, err))
	}
	req.Header = s.header.Clone()
	for _, h := range s.hdrs {
		req.Header[h.name][h.i] = string(h.t.Render(nil, v, headerEscape))
	}
	if s.host != "" {
		req.Host = s.host
	}
	// A NopCloser'd bytes.Reader is a body net/http knows to be in memory:
	// it sends headers and body in one write.
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	switch {
	case len(body) == 0:
		req.Body = http.NoBody
	case inPlace:
		wb := &watchedBody{Reader: bytes.NewReader(body), closed: make(chan struct{})}
		req.Body, closed = wb, wb.closed
	}

	if s.log != nil && s.slow < s.timeout {
		waited := time.AfterFunc(s.slow, func() {
			s.log.Warn(fmt.Sprintf("http sink: %s %s: no response after %v; waiting up to --timeout %v", s.method, s.endpoint, s.slow, s.timeout))
		})
		defer waited.Stop()
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, s.requestError(ctx, rctx, err)
	}
	return s.answer(resp)
}

// answer reads resp and returns its code, and for anything but a 2xx the
// error: permanent, or retried (after Retry-After, if given), quoting the
// start of the body with secrets cut out.
func (s *HTTP) answer(resp *http.Response) (int, error) {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		// Read the body so the connection can be reused; a failure here
		// changes nothing, the server has said yes.
		io.CopyN(io.Discard, resp.Body, maxDrain)
		resp.Body.Close()
		return code, nil
	}
	// Read past the quoted length, so that a secret the quote would cut
	// is still recognised and cut out whole.
	snippet := make([]byte, s.red.window(maxQuote))
	n, _ := io.ReadFull(resp.Body, snippet)
	more, _ := io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
	quoted, cut := s.red.quote(snippet[:n], maxQuote)
	err := &statusError{
		method:    s.method,
		endpoint:  s.endpoint,
		status:    s.red.redact(resp.Status), // the reason phrase is the server's too
		code:      code,
		body:      quoted,
		truncated: cut || more > 0,
	}
	switch {
	case code == http.StatusRequestEntityTooLarge:
		return code, batcher.Permanent(err)
	case retryable(code):
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
			return code, batcher.RetryAfter(err, d)
		}
		return code, err
	default:
		return code, batcher.Permanent(err)
	}
}

// maxQuote is how much of an error response's body its error quotes.
const maxQuote = 512

// maxDrain bounds how much of a response body is read to keep its
// connection; past it, closing the connection is cheaper.
const maxDrain = 4 << 20

// retryable reports whether a status may succeed on a later attempt.
func retryable(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500 && code < 600
}

// retryAfter reads a Retry-After value: delay-seconds or an HTTP-date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		const most = 1 << 32 // seconds, far past any --max-backoff
		return time.Duration(min(n, most)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// requestError describes a request that got no response. The url.Error
// that the client returns quotes the URL, so it is unwrapped.
func (s *HTTP) requestError(ctx, rctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no response within %v (--timeout): %w", s.timeout, err)
	}
	err = fmt.Errorf("http sink: %s %s: %w", s.method, s.endpoint, err)
	if msg := s.red.redact(err.Error()); msg != err.Error() {
		// The client quotes a malformed response, which may echo a secret.
		err = &redactedError{msg: msg, err: err}
	}
	// Retrying cannot fix a certificate the client rejects, a handshake the
	// server refuses, or a server that does not speak TLS.
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var op *net.OpError
	if errors.As(err, &cv) || errors.As(err, &rh) ||
		errors.As(err, &op) && op.Op == "remote error" { // a TLS alert from the server
		return batcher.Permanent(err)
	}
	return err
}

// A redactedError is err with secrets cut out of its text.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// A statusError is a response other than 2xx.
type statusError struct {
	method, endpoint string
	status           string // "503 Service Unavailable"
	code             int
	body             string // its first maxQuote bytes, secrets cut out
	truncated        bool
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("http sink: %s %s: %s", e.method, e.endpoint, e.status)
	body := strings.TrimSpace(e.body)
	if body == "" {
		return s
	}
	if e.truncated {
		body += "…"
	}
	return s + ": " + strconv.Quote(body)
}

// watchedBody is a request body that says when the transport closed it:
// it has then stopped reading it.
type watchedBody struct {
	*bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (w *watchedBody) Close() error {
	w.once.Do(func() { close(w.closed) })
	return nil
}

// scratch is the memory one request needs, kept in a pool: the encoded
// body and the compressed body.
type scratch struct {
	body []byte
	gz   []byte
}

func (s *HTTP) getScratch() *scratch {
	if sc, ok := s.scratch.Get().(*scratch); ok {
		return sc
	}
	return new(scratch)
}

func (s *HTTP) putScratch(sc *scratch) { s.scratch.Put(sc) }

// Close closes the connections kept alive.
func (s *HTTP) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
