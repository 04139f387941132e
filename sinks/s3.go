package sinks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/batchpipe/batchpipe/batcher"
)

// Policies for an object already at a batch's key (--if-exists).
const (
	IfExistsSkipSame  = "skip-same" // the same bytes: that batch, delivered before
	IfExistsFail      = "fail"
	IfExistsOverwrite = "overwrite"
)

// What is known of the store's create-only writes (--conditional-writes).
const (
	ConditionalAuto = "auto" // a probe at start finds out
	ConditionalOn   = "on"   // If-None-Match is honoured
	ConditionalOff  = "off"  // it is not: HEAD before each PUT
)

// MinPartSize is S3's smallest part of a multipart upload but the last.
const MinPartSize = 5 << 20

// maxKeyBytes is S3's limit on a key.
const maxKeyBytes = 1024

// shaMeta is the user metadata that holds the hex SHA-256 of an object's
// body, read back when a key is found taken.
const shaMeta = "batchpipe-sha256"

// S3Config is the s3 sink's settings.
type S3Config struct {
	Bucket   string
	Template string // the key template, without the bucket

	Region    string // default: from the environment or the profile
	Profile   string // shared config profile
	Endpoint  string // an S3-compatible store's URL
	PathStyle bool   // bucket in the path, not in the host name

	CACert, Cert, Key string
	Insecure          bool

	Format      Format
	Compress    Compression
	ContentType string // default: the format's
	// Encoder, when set, lays out each batch as a whole object (Parquet)
	// in place of Format, with Content-Type ParquetContentType.
	Encoder BatchEncoder

	IfExists    string // IfExists*; default skip-same
	Conditional string // Conditional*; default auto
	PartSize    int64  // bodies above go up in parts; default 16 MiB
	// ExactlyOnce: a batch is formed again the same after a crash, and so
	// must its key be: {date}, {hour} and {time} come from its first
	// record's timestamp, and {run} and {seq} are refused.
	ExactlyOnce bool

	Timeout   time.Duration // bounds each request; default 1m
	Parallel  int
	UserAgent string
	Logger    *slog.Logger
}

// S3 uploads each batch as one object, create-only.
type S3 struct {
	client    *s3.Client
	bucket    string
	tmpl      *Template
	src       string
	byOffsets bool
	format    Format
	encoder   BatchEncoder
	compress  Compression
	ctype     string
	ifExists  string
	headFirst bool // the store ignores If-None-Match
	partSize  int64
	exactly   bool
	timeout   time.Duration
	red       *redactor
	log       *slog.Logger
	now       func() time.Time

	foundInPlace atomic.Int64
	bufs         sync.Pool // *[]byte
	// times holds the time of each unsettled batch's first attempt: a
	// retry goes to the same key even past midnight.
	times sync.Map // int64 → time.Time
}

var (
	_ batcher.Sink    = (*S3)(nil)
	_ batcher.Closer  = (*S3)(nil)
	_ batcher.Settler = (*S3)(nil)
)

// An UnavailableError is something a sink needs that is not there at
// start (a bucket missing, a store not answering): exit 69, not 2.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// ParseS3URL splits s3://BUCKET/KEY-TEMPLATE.
func ParseS3URL(s string) (bucket, tmpl string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not s3://BUCKET/KEY-TEMPLATE", s)
	}
	bucket, tmpl, _ = strings.Cut(rest, "/")
	switch {
	case bucket == "":
		return "", "", fmt.Errorf("%q names no bucket", s)
	case tmpl == "" || strings.HasSuffix(tmpl, "/"):
		return "", "", fmt.Errorf("%q names no object: give a key template after the bucket, as s3://%s/{run}-{seq}.log", s, bucket)
	}
	return bucket, tmpl, nil
}

// CheckS3Template checks a key template without the network: it must give
// each batch a key of its own, and with exactly once the same key when a
// batch is formed again.
func CheckS3Template(tmpl string, exactlyOnce bool) error {
	t, err := ParseTemplate(tmpl, true)
	if err != nil {
		return fmt.Errorf("s3 sink: key template %q: %w", tmpl, err)
	}
	if exactlyOnce {
		for _, p := range []string{"run", "seq"} {
			if t.Has(p) {
				return fmt.Errorf("s3 sink: key template %q: {%s} differs when a batch is formed again after a crash, so --exactly-once would store it twice: name batches by {batch_id}, or {topic}, {partition}, {first_offset} and {last_offset} ({key}, {date}, {hour} and {time} are stable too)", tmpl, p)
			}
		}
		if !t.Has("batch_id") && !t.Has("first_offset") && !t.Has("last_offset") {
			return fmt.Errorf("s3 sink: key template %q gives every batch the same key: with --exactly-once name batches by {batch_id}, or {partition} and {first_offset}", tmpl)
		}
		if !t.Has("batch_id") && !t.Has("partition") && !t.Has("key") {
			return fmt.Errorf("s3 sink: key template %q: offsets alone repeat from one partition to the next: add {partition} (or use {batch_id})", tmpl)
		}
		return nil
	}
	if err := uniqueNames(tmpl); err != nil {
		return fmt.Errorf("s3 sink: %w", err)
	}
	return nil
}

// NewS3 checks cfg, loads the credentials, checks that the bucket is
// there and can be reached (HeadBucket), and, with ConditionalAuto, finds
// out whether the store honours create-only writes. All this happens
// before anything is read.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	t, _ := ParseTemplate(cfg.Template, true)
	awsCfg, err := cfg.awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	red, err := credentialRedactor(ctx, awsCfg, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	s := &S3{
		client:    client,
		bucket:    cfg.Bucket,
		tmpl:      t,
		src:       cfg.Template,
		byOffsets: !t.Has("seq"),
		format:    cfg.Format,
		compress:  cfg.Compress,
		encoder:   cfg.Encoder,
		ctype:     cmp.Or(cfg.ContentType, cfg.Format.ContentType()),
		ifExists:  cfg.IfExists,
		headFirst: cfg.Conditional == ConditionalOff,
		partSize:  cfg.PartSize,
		exactly:   cfg.ExactlyOnce,
		timeout:   cfg.Timeout,
		red:       red,
		log:       cfg.Logger,
		now:       time.Now,
	}
	if err := s.headBucket(ctx); err != nil {
		return nil, err
	}
	if cfg.IfExists != IfExistsOverwrite && cfg.Conditional == ConditionalAuto {
		if err := s.probe(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// describe returns the HTTP status (0 if none came), the store's error
// code and its message.
func (s *S3) describe(err error) (status int, code, msg string) {
	if err == nil {
		return 0, "", ""
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
	}
	return status, code, msg
}

// reason says why a request failed: the store's status, code and message,
// or the transport's error, without the SDK's wrapping.
func (s *S3) reason(err error) string {
	status, code, msg := s.describe(err)
	if status != 0 {
		r := fmt.Sprintf("%d %s", status, http.StatusText(status))
		if code != "" && code != http.StatusText(status) && code != fmt.Sprint(status) {
			r += ": " + code
		}
		if msg != "" && msg != code {
			r += ": " + msg
		}
		return r
	}
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		return oe.Err.Error()
	}
	return err.Error()
}

// Key returns the object key of batch b. Values from the input ({topic},
// {key}) are escaped as file names are (see pathEscape): one path segment
// each, never "." or "..", and two values never give one key.
func (s *S3) Key(b *batcher.Batch) string {
	var now time.Time
	if m := b.Meta(0); s.exactly && m != nil && !m.Timestamp.IsZero() {
		// The first record's time: the same when the batch is formed again.
		now = m.Timestamp
	} else {
		t, _ := s.times.LoadOrStore(b.Seq, s.now())
		now = t.(time.Time)
	}
	return string(s.tmpl.Render(nil, BatchValues(b, now), pathEscape))
}

// Settled forgets the time of a batch no longer attempted.
func (s *S3) Settled(seq int64) { s.times.Delete(seq) }

// FoundInPlace counts batches whose object was there already, with their
// bytes: delivered by an earlier attempt or run.
func (s *S3) FoundInPlace() int64 { return s.foundInPlace.Load() }

// Deliver uploads b as one object.
func (s *S3) Deliver(ctx context.Context, b *batcher.Batch) error {
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	var body []byte
	var rej []batcher.Rejected
	if s.encoder != nil {
		var err error
		if body, rej, err = s.encoder.Encode(b); err != nil {
			return batcher.Permanent(fmt.Errorf("s3 sink: batch %d: %w", b.Seq, err))
		}
	} else {
		body, rej = s.format.Body(bp, b)
	}
	if len(body) == 0 {
		return rejected(rej) // every record rejected: no object
	}
	if _, ok := b.Span(); s.byOffsets && !ok {
		return batcher.Permanent(fmt.Errorf("s3 sink: key template %q names batches by their offsets, and batch %d holds records of several partitions, or none from Kafka: add {seq}, or use --exactly-once", s.src, b.Seq))
	}
	if s.compress.On() {
		zp, _ := s.bufs.Get().(*[]byte)
		if zp == nil {
			zp = new([]byte)
		}
		defer s.bufs.Put(zp)
		z, err := s.compress.Append((*zp)[:0], body)
		if err != nil {
			return batcher.Permanent(fmt.Errorf("s3 sink: batch %d: %w", b.Seq, err))
		}
		*zp, body = z, z
	}
	key := s.Key(b)
	if len(key) > maxKeyBytes {
		return batcher.Permanent(fmt.Errorf("s3 sink: key %.64q… of batch %d is %d bytes long, over S3's %d", key, b.Seq, len(key), maxKeyBytes))
	}
	sum := sha256.Sum256(body)
	if err := s.upload(ctx, key, body, sum); err != nil {
		return err
	}
	return rejected(rej)
}

// ParquetContentType is the media type of a Parquet object.
const ParquetContentType = "application/vnd.apache.parquet"

// DeliveryMemory is what encoding a batch of maxBytes holds beyond the
// batch, if the encoder says.
func (s *S3) DeliveryMemory(maxBytes int) int64 {
	if m, ok := s.encoder.(interface{ Memory(int) int64 }); ok {
		return m.Memory(maxBytes)
	}
	return 0
}

// upload writes body at key under the --if-exists policy.
func (s *S3) upload(ctx context.Context, key string, body []byte, sum [32]byte) error {
	if s.ifExists != IfExistsOverwrite && s.headFirst {
		found, err := s.existing(ctx, key, sum)
		if found || err != nil {
			return err
		}
	}
	var status int
	var err error
	if int64(len(body)) > s.partSize {
		status, err = s.multipart(ctx, key, body, sum)
	} else {
		status, err = s.put(ctx, key, body, sum)
	}
	if err == nil {
		return nil
	}
	if status == 412 {
		_, err := s.existing(ctx, key, sum)
		return err
	}
	return err
}

func (s *S3) meta(sum [32]byte) map[string]string {
	return map[string]string{shaMeta: hex.EncodeToString(sum[:])}
}

func (s *S3) ifNoneMatch() *string {
	if s.ifExists == IfExistsOverwrite {
		return nil
	}
	return aws.String("*")
}

func (s *S3) encoding() *string {
	if e := s.compress.Encoding(); e != "" {
		return aws.String(e)
	}
	return nil
}

// put is one PutObject. The store checks the body against its SHA-256.
// The body is the batch's memory: the SDK wraps it in a closer that it
// closes before returning, and no read happens after, so the memory may
// be reused once put returns, even after an early answer.
func (s *S3) put(ctx context.Context, key string, body []byte, sum [32]byte) (int, error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.client.PutObject(rctx, &s3.PutObjectInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(key),
		Body:            bytes.NewReader(body),
		ContentLength:   aws.Int64(int64(len(body))),
		ContentType:     aws.String(s.ctype),
		ContentEncoding: s.encoding(),
		ChecksumSHA256:  aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		Metadata:        s.meta(sum),
		IfNoneMatch:     s.ifNoneMatch(),
	}, payloadHash(sum))
	return s.failed(ctx, rctx, "put", key, err)
}

// multipart uploads body in parts of s.partSize, one after another (the
// -j workers upload batches side by side), from the batch's memory. The
// upload is completed with If-None-Match, and aborted if it is not
// completed, so that no part is left to cost storage.
func (s *S3) multipart(ctx context.Context, key string, body []byte, sum [32]byte) (status int, err error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	up, err := s.client.CreateMultipartUpload(rctx, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(key),
		ContentType:       aws.String(s.ctype),
		ContentEncoding:   s.encoding(),
		Metadata:          s.meta(sum),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	status, err = s.failed(ctx, rctx, "create multipart upload", key, err)
	cancel()
	if err != nil {
		return status, err
	}
	defer func() {
		if err == nil {
			return
		}
		// Not ctx: a signal that abandoned the upload must not stop its
		// abort.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: up.UploadId,
		}); aerr != nil {
			err = errors.Join(err, fmt.Errorf("s3 sink: abort multipart upload %s of s3://%s/%s: %s", aws.ToString(up.UploadId), s.bucket, key, s.red.redact(s.reason(aerr))))
		}
	}()
	var parts []types.CompletedPart
	for n, off := int32(1), int64(0); off < int64(len(body)); n, off = n+1, off+s.partSize {
		part := body[off:min(off+s.partSize, int64(len(body)))]
		psum := sha256.Sum256(part)
		psum64 := base64.StdEncoding.EncodeToString(psum[:])
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		out, err := s.client.UploadPart(rctx, &s3.UploadPartInput{
			Bucket:         aws.String(s.bucket),
			Key:            aws.String(key),
			UploadId:       up.UploadId,
			PartNumber:     aws.Int32(n),
			Body:           bytes.NewReader(part),
			ContentLength:  aws.Int64(int64(len(part))),
			ChecksumSHA256: aws.String(psum64),
		}, payloadHash(psum))
		status, err = s.failed(ctx, rctx, fmt.Sprintf("upload part %d", n), key, err)
		cancel()
		if err != nil {
			return status, err
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumSHA256: aws.String(psum64)})
	}
	rctx, cancel = context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err = s.client.CompleteMultipartUpload(rctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(key),
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     s.ifNoneMatch(),
	})
	return s.failed(ctx, rctx, "complete multipart upload", key, err)
}

// payloadHash hands the signer the body's SHA-256, known already: over
// http:// it would otherwise read the body once more to compute it.
func payloadHash(sum [32]byte) func(*s3.Options) {
	hash := hex.EncodeToString(sum[:])
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("batchpipePayloadHash",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					return next.HandleFinalize(v4.SetPayloadHash(ctx, hash), in)
				}), middleware.Before)
		})
	}
}

// existing looks at the object at key: with the batch's checksum it is the
// batch, delivered before (found is true); with another it is not
// overwritten, and the batch fails.
func (s *S3) existing(ctx context.Context, key string, sum [32]byte) (found bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out, err := s.client.HeadObject(rctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if status, _, _ := s.describe(err); status == 404 {
		return false, nil
	}
	if _, err := s.failed(ctx, rctx, "head", key, err); err != nil {
		return false, err
	}
	have := out.Metadata[shaMeta]
	want := hex.EncodeToString(sum[:])
	where := "s3://" + s.bucket + "/" + key
	switch {
	case s.ifExists == IfExistsFail:
		return false, batcher.Permanent(fmt.Errorf("s3 sink: %s exists already: not overwriting it (--if-exists fail)", where))
	case have == want:
		s.foundInPlace.Add(1)
		s.log.Debug("s3 sink: object found in place, with the batch's bytes", "key", key)
		return true, nil
	case have == "":
		return false, batcher.Permanent(fmt.Errorf("s3 sink: %s exists already, not written by batchpipe (no %s metadata): not overwriting it", where, shaMeta))
	}
	return false, batcher.Permanent(fmt.Errorf("s3 sink: %s exists already with other bytes (sha256 %.12s…, the batch's %.12s…): not overwriting it", where, have, want))
}

// failed turns a request's error into the sink's: retried unless retrying
// cannot help. It returns the HTTP status too (0 if none came).
func (s *S3) failed(ctx, rctx context.Context, op, key string, err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	status, code, _ := s.describe(err)
	reason := s.reason(err)
	if status == 0 && ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		reason = fmt.Sprintf("no response within %v (--timeout)", s.timeout)
	}
	err = fmt.Errorf("s3 sink: %s s3://%s/%s: %s", op, s.bucket, key, s.red.redact(reason))
	switch {
	case status == 412:
		return status, err
	case status == 0, status == 408, status == 409, status == 429, status >= 500 && status != 501 && status != 505,
		code == "SlowDown", code == "Throttling", code == "ThrottlingException", code == "RequestTimeout",
		code == "RequestTimeTooSkewed", code == "ExpiredToken", code == "OperationAborted":
		// 409: a concurrent conditional write; the next attempt sees it
		// done (412) or not.
		return status, err
	}
	// AccessDenied, NoSuchBucket, an invalid key, a checksum mismatch:
	// the same request would be refused again.
	return status, batcher.Permanent(err)
}

// Close does nothing: the SDK's client keeps its connections to itself,
// and they end with the process.
func (s *S3) Close() error { return nil }
