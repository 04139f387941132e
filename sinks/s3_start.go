package sinks

// The s3 sink's checks at start, before anything is read: its settings, the
// AWS config and credentials, the bucket is there and answers, and the
// store honours create-only writes.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// headBucket checks the bucket: missing or unreachable is an
// UnavailableError; refused (403) is the credentials' or the policy's.
func (s *S3) headBucket(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.client.HeadBucket(rctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return nil
	}
	status, code, msg := s.describe(err)
	where := "s3://" + s.bucket
	switch {
	case status == 404 || code == "NoSuchBucket":
		return &UnavailableError{fmt.Errorf("s3 sink: bucket %s not found (404): create it, or check the name, --region and --endpoint", where)}
	case status == 301 || code == "PermanentRedirect":
		return fmt.Errorf("s3 sink: bucket %s is in another region: give its --region", where)
	case status == 400 && (code == "AuthorizationHeaderMalformed" || code == "BadRequest" || code == ""):
		return fmt.Errorf("s3 sink: bucket %s: the store refused the request (%s): check --region and --endpoint", where, cmp.Or(msg, "400 Bad Request"))
	case status == 403 || status == 401:
		return fmt.Errorf("s3 sink: bucket %s: access denied (%s): check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --profile) and that they may use the bucket", where, s.red.redact(s.reason(err)))
	case status == 0 || status >= 500:
		return &UnavailableError{fmt.Errorf("s3 sink: bucket %s: %s", where, s.red.redact(firstLine(s.reason(err))))}
	}
	return fmt.Errorf("s3 sink: bucket %s: %s", where, s.red.redact(s.reason(err)))
}

// probe writes a small object twice with If-None-Match: * and sees whether
// the second write is refused. Where it is not, each PUT is preceded by a
// HEAD, which leaves two writers at the same instant racing.
func (s *S3) probe(ctx context.Context) error {
	key := s.tmpl.parts[0].lit
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		key = key[:i+1]
	} else {
		key = ""
	}
	key += ".batchpipe-probe-" + RunID()
	body := []byte("batchpipe checks that this store honours If-None-Match; it deletes this object\n")
	put := func() (int, error) {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		_, err := s.client.PutObject(rctx, &s3.PutObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))), IfNoneMatch: aws.String("*"),
		})
		status, _, _ := s.describe(err)
		return status, err
	}
	if _, err := put(); err != nil {
		return s.startError("put "+key, err)
	}
	status, err := put()
	defer func() {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		if _, err := s.client.DeleteObject(rctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}); err != nil {
			s.log.Warn(fmt.Sprintf("s3 sink: delete the probe object s3://%s/%s: %s (give --conditional-writes on or off to skip the probe)", s.bucket, key, s.red.redact(s.reason(err))))
		}
	}()
	switch {
	case status == 412:
		return nil
	case err == nil || status == 501:
		s.headFirst = true
		s.log.Warn(fmt.Sprintf("s3 sink: s3://%s ignores If-None-Match: each batch is looked for (HEAD) before it is written, and two writers of one key at the same instant could still overwrite each other", s.bucket))
		return nil
	}
	return s.startError("put "+key, err)
}

// startError is a request at start that failed.
func (s *S3) startError(op string, err error) error {
	status, _, _ := s.describe(err)
	err = fmt.Errorf("s3 sink: %s in s3://%s: %s", op, s.bucket, s.red.redact(s.reason(err)))
	if status == 0 || status >= 500 {
		return &UnavailableError{err}
	}
	return err
}

// check fills in cfg's defaults and checks its settings and template.
func (cfg *S3Config) check() error {
	cfg.IfExists = cmp.Or(cfg.IfExists, IfExistsSkipSame)
	cfg.Conditional = cmp.Or(cfg.Conditional, ConditionalAuto)
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.IfExists != IfExistsSkipSame && cfg.IfExists != IfExistsFail && cfg.IfExists != IfExistsOverwrite:
		return fmt.Errorf("s3 sink: --if-exists takes fail, skip-same or overwrite, not %q", cfg.IfExists)
	case cfg.Conditional != ConditionalAuto && cfg.Conditional != ConditionalOn && cfg.Conditional != ConditionalOff:
		return fmt.Errorf("s3 sink: --conditional-writes takes auto, on or off, not %q", cfg.Conditional)
	case cfg.PartSize < MinPartSize:
		return fmt.Errorf("s3 sink: --part-size must be at least 5MiB (S3's smallest part), not %d bytes", cfg.PartSize)
	case cfg.Timeout < 0:
		return fmt.Errorf("s3 sink: --timeout must be positive, not %v", cfg.Timeout)
	}
	if err := CheckS3Template(cfg.Template, cfg.ExactlyOnce); err != nil {
		return err
	}
	https := cfg.Endpoint == "" || strings.HasPrefix(cfg.Endpoint, "https://")
	if cfg.Endpoint != "" && !https && !strings.HasPrefix(cfg.Endpoint, "http://") {
		return fmt.Errorf("s3 sink: --endpoint %q: give http:// or https:// in front", cfg.Endpoint)
	}
	return nil
}

// awsConfig loads the SDK's configuration, with an HTTP client of cfg's
// TLS settings, no retries of its own, and a region.
func (cfg *S3Config) awsConfig(ctx context.Context) (aws.Config, error) {
	https := cfg.Endpoint == "" || strings.HasPrefix(cfg.Endpoint, "https://")
	tlsConf, err := (&HTTPConfig{CACert: cfg.CACert, Cert: cfg.Cert, Key: cfg.Key, Insecure: cfg.Insecure}).tlsConfig(https)
	if err != nil {
		return aws.Config{}, errors.New(strings.Replace(err.Error(), "http sink:", "s3 sink:", 1))
	}
	// The SDK's buildable client: the config loader adds AWS_CA_BUNDLE's
	// CAs to it, which it cannot do to a plain http.Client.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		if tlsConf != nil {
			tr.TLSClientConfig = tlsConf
		}
		tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		// One idle connection kept per worker, as the http sink does.
		tr.MaxIdleConns = cfg.Parallel + 4
		tr.MaxIdleConnsPerHost = cfg.Parallel + 4
		// The transport's own 4 KiB write buffer, not the http sink's
		// 256 KiB: stores that close the connection after each request
		// (moto, some gateways) would have one allocated per batch,
		// a fifth of batchpipe's CPU against moto, and over TLS the
		// body goes out in 16 KiB records whatever the buffer.
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		// One attempt per call: the pipeline retries with its backoff,
		// counts the retries, and the sink decides what is worth one.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(cfg.Profile))
	}
	if cfg.UserAgent != "" {
		opts = append(opts, config.WithAppID(strings.ReplaceAll(cfg.UserAgent, "/", "-")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3 sink: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		if cfg.Endpoint == "" {
			return aws.Config{}, errors.New("s3 sink: no region: give --region, or set AWS_REGION, or region in the profile")
		}
		awsCfg.Region = "us-east-1" // what most S3-compatible stores expect
	}
	return awsCfg, nil
}

// credentialRedactor finds the credentials, within timeout, and returns a
// redactor of each as sent and as a store might quote it.
func credentialRedactor(ctx context.Context, awsCfg aws.Config, timeout time.Duration) (*redactor, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	creds, err := awsCfg.Credentials.Retrieve(cctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("s3 sink: no credentials found (%s): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --profile, or run where a role is given", firstLine(err.Error()))
	}
	red := &redactor{}
	for _, s := range []string{creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken} {
		// As sent, and as a store might quote them: URL-escaped, base64.
		red.add(s)
		red.add(url.QueryEscape(s))
		red.add(base64.StdEncoding.EncodeToString([]byte(s)))
	}
	return red, nil
}
