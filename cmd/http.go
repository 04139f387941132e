package cmd

import (
	"net/http"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/spf13/cobra"
)

const httpExamples = `  # insert NDJSON rows into ClickHouse, 10000 per INSERT (-b 32M, or the default 1MiB cuts first)
  batchpipe -n 10000 -b 32M -t 1s http --format ndjson 'http://localhost:8123/?query=INSERT%20INTO%20logs%20FORMAT%20JSONEachRow' < logs.ndjson

  # Influx line protocol into VictoriaMetrics, gzipped
  tail -F metrics.lp | batchpipe -n 5000 http --gzip http://localhost:8428/write

  # JSON arrays of 100 events with a bearer token; rejected events kept for replay
  batchpipe -n 100 --dead-letter rejected.ndjson http --format json -H "Authorization: Bearer $TOKEN" https://api.example.com/events < events.ndjson

  # one PUT per batch, 4 at a time, to a server with a private CA that wants a client certificate
  batchpipe -j 4 http -X PUT --cacert ca.pem --cert client.pem --key client-key.pem 'https://store.internal:8443/logs/{run}-{seq}.log' < app.log`

var httpHelp = `Send each batch as the body of one HTTP request to URL (default POST), with
up to -j requests in flight over kept-alive connections.

Body (--format): lines (default) is the records as read, each ended by the
delimiter; ndjson is one JSON value per line; json is a JSON array of the
records. With ndjson and json a record that is not valid JSON is rejected on
its own, naming its position, and the rest of the batch is sent; ndjson turns
line breaks inside a record (pretty-printed JSON read with -0) into spaces and
changes nothing else. As jq and ClickHouse read NDJSON, a blank record goes
as a blank line (delivered, and skipped by the reader), and a UTF-8 byte order
mark starting a record is left out. The Content-Type is text/plain, application/x-ndjson or
application/json unless --content-type says otherwise.

--timeout bounds each request, from connecting to the end of the response
(30s by default); a request still unanswered after 5s gets a warning then,
not only at --timeout. A server that never answers holds a batch at most (1 + --retries) ×
--timeout plus the backoff between (about 2 minutes by default) before it
goes to --dead-letter or stops the run.

A 2xx response is success. Connection errors, timeouts, 408, 429 and 5xx
other than 501 and 505 are retried (--retries, --backoff), waiting as long
as the response's Retry-After asks, up to --max-backoff. Any other status, including
a redirect, is not retried: the batch goes to --dead-letter or stops the run.
A 413 splits the batch in half and sends each half, down to single records;
a record too large alone is rejected. If a part then fails, only its records
are sent again. Errors quote the status and the start of the response body.

Placeholders in URL and in -H values are replaced by the batch's values:
` + sinks.PlaceholderHelp + `.

In the URL's path a value is escaped as in file names (see file --help: '/'
is %2F, "." and ".." are %2E and %2E%2E, the empty value is %), then
percent-encoded, '%' too: ".." goes as %252E%252E, so a value stays one
segment, never a dot segment, even behind a proxy that decodes %XX once.
A receiver decodes the segment twice ("%" once decoded is the empty value);
Go's r.PathValue decodes once. In the query a value is percent-encoded once
(all but letters, digits and -._~); in header values only control bytes and
'%' are. {seq} starts at 1 in every
run, so '…/{run}-{seq}.log' never replaces an earlier run's object; the
halves of a split batch get {seq}-1 and {seq}-2, records sent again after a
part failed {seq}-r2…, and each part its own {batch_id}.

A user:password@ in URL is sent as basic auth. Errors
show URL only as scheme://host/…, and header values never appear, so tokens
stay out of logs. Where an error quotes what the server said (its status line
and the first 512 bytes of its body), every -H value (but Content-Type,
Content-Encoding, Accept, Accept-Encoding, User-Agent and Host) and each word
of one, the URL's user name and password, the values of query parameters
named for a secret (api_key, token, sig, password…), and each path segment or
other query value that looks generated (8 bytes or more mixing letters with
digits, as a webhook's token) are cut out, as is any run of 6 bytes or more
of one of them, in any letter case and URL-escaped, JSON-escaped or in
base64: a server that echoes a token, whole, cut, in part or encoded, shows
[redacted]. Words a person chose (/api/v2/ingest, database=logs), parameter
names, parts made of placeholders and query values holding spaces (SQL) are
left alone, so "Unknown setting insert_deduplication_token" stays readable.

https uses the system's CAs, or those in --cacert; --cert and --key give a
client certificate for mutual TLS.`

// httpSpec is the http sink's settings.
type httpSpec struct {
	args    []string
	headers []string
	cfg     sinks.HTTPConfig
}

func (s *httpSpec) validate(o *options) error {
	cfg := &s.cfg
	if len(s.args) != 1 {
		return usagef("http: give one URL")
	}
	cfg.URL = s.args[0]
	cfg.Header = http.Header{}
	for i, h := range s.headers {
		name, value, err := sinks.ParseHeader(h)
		if err != nil {
			return usagef("http: header %d (-H): %v", i+1, err)
		}
		cfg.Header.Add(name, value)
	}
	cfg.Parallel = o.parallel
	cfg.UserAgent = "batchpipe/" + buildVersion()
	if cfg.Gzip && cfg.Compress.On() && cfg.Compress.Algo != "gzip" {
		return usagef("http: --gzip is --compress gzip, and --compress says %s: give one", cfg.Compress.Algo)
	}
	if cfg.Timeout <= 0 {
		return usagef("http: --timeout must be positive, not %v", cfg.Timeout)
	}
	return nil
}

func (s *httpSpec) open(env sinkEnv) (batcher.Sink, error) {
	s.cfg.Logger = env.log
	return sinks.NewHTTP(s.cfg)
}

func newHTTPCmd(o *options) *cobra.Command {
	s := &httpSpec{}
	cfg := &s.cfg
	c := &cobra.Command{
		Use:         "http [flags] URL",
		Short:       "Send each batch as one HTTP request",
		Long:        httpHelp,
		Example:     httpExamples,
		Annotations: map[string]string{summaryKey: "1,2,5"},
		RunE: func(c *cobra.Command, args []string) error {
			s.args = args
			return o.run(s)
		},
	}
	f := c.Flags()
	f.SortFlags = false
	f.StringVarP(&cfg.Method, "method", "X", "POST", "request method")
	f.StringArrayVarP(&s.headers, "header", "H", nil, "add a header to every request, 'Name: value' (repeatable)")
	f.Var(&cfg.Format, "format", "body format: lines, ndjson or json")
	f.StringVar(&cfg.ContentType, "content-type", "", "Content-Type of the body (default: the format's)")
	f.Var(&cfg.Compress, "compress", "compress bodies: gzip or zstd, with :LEVEL if given (sets Content-Encoding)")
	f.BoolVar(&cfg.Gzip, "gzip", false, "compress bodies with gzip: --compress gzip")
	f.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "give up on a request after this long, and retry it")
	f.StringVar(&cfg.CACert, "cacert", "", "trust the CA certificates in this PEM file instead of the system's")
	f.StringVar(&cfg.Cert, "cert", "", "client certificate (PEM) for mutual TLS")
	f.StringVar(&cfg.Key, "key", "", "private key (PEM) of --cert")
	f.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the server's certificate")
	return c
}
