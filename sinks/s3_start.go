package sinks

// The s3 sink's checks at start, before anything is read: the bucket is
// there and answers, and the store honours create-only writes.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
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
