package cmd

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/spf13/cobra"
)

const s3Examples = `  # a log to S3, one gzip object a minute (or every 10000 lines)
  tail -F app.log | batchpipe -n 10000 -t 1m s3 --compress gzip 's3://logs/app/{date}/{hour}/{run}-{seq}.log.gz'

  # a Kafka topic archived exactly once: objects named by their offsets
  batchpipe --kafka-brokers localhost:9092 --topic orders --group archive --exactly-once \
    s3 --compress zstd 's3://archive/{topic}/{partition}/{first_offset}-{last_offset}.ndjson.zst'

  # one object per key, to an S3-compatible store (MinIO, Ceph, R2)
  batchpipe --partition-by '{json:tenant}' s3 --endpoint http://localhost:9000 --path-style \
    's3://events/{key}/{run}-{seq}.ndjson' < events.ndjson`

var s3Help = `Upload each batch as one object to an S3 bucket or an S3-compatible store,
up to -j uploads at a time.

Credentials come as for the AWS CLI: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, the shared config and credentials files (--profile or
AWS_PROFILE), SSO, web identity, container and instance roles. None of them
is ever printed. --region (or AWS_REGION) is needed for AWS; with --endpoint
it defaults to us-east-1.

Keys come from KEY-TEMPLATE with the placeholders of file --per-batch:
` + sinks.PlaceholderHelp + `.
Values from the input ({topic}, {key}) are escaped as file names are: one
path segment each, never . or .., two values never one key. A template that
would give two batches of a run one key is refused. With --exactly-once,
keys must be the same when a batch is formed again after a crash: {run} and
{seq} are refused, and {date}, {hour} and {time} are those of the batch's
first Kafka record (its timestamp), not of the upload.

Each object is written create-only (If-None-Match: *), with the SHA-256 of
its body for the store to check, and in the metadata
x-amz-meta-batchpipe-sha256. If the key is taken (412), the object's
metadata is read: the same SHA-256 means the batch was delivered before (a
retry, a replay), and it counts as delivered, "found in place"; other bytes
fail the batch, naming the key (--if-exists fail fails it either way;
overwrite writes without the condition). 409, 5xx, SlowDown and timeouts are
retried with --retries and --backoff; AccessDenied, NoSuchBucket and any
other refusal fail the batch at once. At start the bucket is checked: missing
or unreachable is exit 69, refused (credentials) exit 2. --conditional-writes
auto writes a probe object twice to find out whether the store honours
If-None-Match, and deletes it; where it does not, each upload is preceded by
a HEAD, with one warning (two writers at the same instant may still race).

Bodies above --part-size go up as a multipart upload, completed with
If-None-Match, and aborted when it is abandoned. Uploads are sent from the
batch's memory: with --compress, each upload holds its compressed body too.

--compress gzip|zstd[:LEVEL] sets Content-Encoding: gzip or zstd, and keeps
Content-Type that of the body (--format's, or --content-type): aws s3 cp and
the SDKs download the stored bytes, compressed, as written; ClickHouse and
DuckDB pick the codec from a .gz or .zst at the end of the key, so end keys
so. The same batch always compresses to the same bytes.

` + parquetHelp + ` Objects get Content-Type ` + sinks.ParquetContentType + `.`

// s3Spec is the s3 sink's settings.
type s3Spec struct {
	args     []string
	cfg      sinks.S3Config
	format   bodyFormat
	pf       parquetFlags
	partSize byteSize
}

func (s *s3Spec) validate(o *options) error {
	cfg := &s.cfg
	if len(s.args) != 1 {
		return usagef("s3: give one s3://BUCKET/KEY-TEMPLATE")
	}
	bucket, tmpl, err := sinks.ParseS3URL(s.args[0])
	if err != nil {
		return usagef("s3: %v", err)
	}
	cfg.Bucket, cfg.Template = bucket, tmpl
	cfg.ExactlyOnce = o.kafka.exactlyOnce
	cfg.PartSize = int64(s.partSize)
	cfg.Parallel = o.parallel
	cfg.UserAgent = "batchpipe/" + buildVersion()
	switch {
	case cfg.Timeout <= 0:
		return usagef("s3: --timeout must be positive, not %v", cfg.Timeout)
	case cfg.PartSize < sinks.MinPartSize:
		return usagef("s3: --part-size must be at least 5MiB (S3's smallest part), not %d bytes", cfg.PartSize)
	case !o.kafka.enabled() && (strings.Contains(tmpl, "{topic}") || strings.Contains(tmpl, "{partition}")):
		return usagef("s3: {topic} and {partition} are those of Kafka records: give --topic, or take them out of the key template")
	}
	switch cfg.IfExists {
	case sinks.IfExistsSkipSame, sinks.IfExistsFail, sinks.IfExistsOverwrite:
	default:
		return usagef("s3: --if-exists takes fail, skip-same or overwrite, not %q", cfg.IfExists)
	}
	switch cfg.Conditional {
	case sinks.ConditionalAuto, sinks.ConditionalOn, sinks.ConditionalOff:
	default:
		return usagef("s3: --conditional-writes takes auto, on or off, not %q", cfg.Conditional)
	}
	if err := sinks.CheckS3Template(tmpl, cfg.ExactlyOnce); err != nil {
		return usagef("%v", err)
	}
	if err := s.pf.check(o, "s3", &s.format); err != nil {
		return err
	}
	cfg.Format = s.format.Format
	return nil
}

func (s *s3Spec) open(env sinkEnv) (batcher.Sink, error) {
	cfg := s.cfg
	cfg.Logger = env.log
	if s.format.parquet {
		enc, err := s.pf.encoder(env.diag)
		if err != nil {
			return nil, err
		}
		cfg.Encoder = enc
		cfg.ContentType = cmp.Or(cfg.ContentType, sinks.ParquetContentType)
	}
	sink, err := sinks.NewS3(context.Background(), cfg)
	var unavailable *sinks.UnavailableError
	if errors.As(err, &unavailable) {
		return nil, &unavailableError{err}
	}
	if err != nil {
		return nil, err
	}
	return sink, nil
}

func newS3Cmd(o *options) *cobra.Command {
	s := &s3Spec{partSize: 16 << 20}
	cfg := &s.cfg
	c := &cobra.Command{
		Use:     "s3 [flags] s3://BUCKET/KEY-TEMPLATE",
		Short:   "Upload each batch as one S3 object, create-only",
		Long:    s3Help,
		Example: s3Examples,
		RunE: func(c *cobra.Command, args []string) error {
			s.args = args
			return o.run(s)
		},
	}
	f := c.Flags()
	f.SortFlags = false
	f.StringVar(&cfg.Region, "region", "", "the bucket's region (default: AWS_REGION, or the profile's)")
	f.StringVar(&cfg.Profile, "profile", "", "a profile of the shared config and credentials files (default: AWS_PROFILE, or default)")
	f.StringVar(&cfg.Endpoint, "endpoint", "", "URL of an S3-compatible store (MinIO, Ceph, R2, SeaweedFS)")
	f.BoolVar(&cfg.PathStyle, "path-style", false, "put the bucket in the URL's path, not in its host name (most S3-compatible stores want it)")
	f.Var(&s.format, "format", "body format: lines, ndjson, json or parquet (each object a Parquet file, see s3 --help and file --help)")
	f.StringVar(&cfg.ContentType, "content-type", "", "Content-Type of the objects (default: the format's)")
	s.pf.add(f, &cfg.Compress, "compress each object: gzip or zstd, with :LEVEL (gzip 1-9, zstd 1-22) if given; sets Content-Encoding")
	f.StringVar(&cfg.IfExists, "if-exists", sinks.IfExistsSkipSame, "an object already at a batch's key: skip-same (the same bytes count as delivered, others fail), fail, or overwrite")
	f.StringVar(&cfg.Conditional, "conditional-writes", sinks.ConditionalAuto, "does the store honour If-None-Match? auto (a probe at start finds out), on, or off (HEAD before each PUT)")
	f.Var(&s.partSize, "part-size", "bodies larger than this go up as a multipart upload in parts of this size (at least 5MiB)")
	f.DurationVar(&cfg.Timeout, "timeout", time.Minute, "give up on a request after this long, and retry it")
	f.StringVar(&cfg.CACert, "cacert", "", "trust the CA certificates in this PEM file instead of the system's")
	f.StringVar(&cfg.Cert, "cert", "", "client certificate (PEM) for mutual TLS")
	f.StringVar(&cfg.Key, "key", "", "private key (PEM) of --cert")
	f.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the server's certificate")
	return c
}
