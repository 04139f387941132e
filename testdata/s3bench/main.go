// Command s3bench is the other side of testdata/bench-s3.sh.
//
//	s3bench mkbucket -endpoint URL BUCKET
//	s3bench put -endpoint URL -n 10000 -j 4 [-plain] BUCKET PREFIX
//
// put reads stdin and cuts it into objects of n lines as it goes, while
// j workers PUT them with the AWS SDK for Go v2 (as the s3 sink does, path
// style): the least a Go program must do to upload the same objects the
// same way, create-only with their SHA-256 (checked by the store, and in
// the metadata), end to end like batchpipe; -plain PUTs them with the
// SDK's defaults. It prints the seconds from its first read to its last
// answer. The credentials and region come from the environment.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: s3bench mkbucket|put [flags] BUCKET [PREFIX]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	endpoint := fs.String("endpoint", "", "the store's URL")
	n := fs.Int("n", 10000, "lines per object")
	j := fs.Int("j", 4, "PUTs at once")
	plain := fs.Bool("plain", false, "no If-None-Match, no SHA-256: the SDK's defaults")
	fs.Parse(os.Args[2:])
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fail(err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(*endpoint)
		o.UsePathStyle = true
	})
	switch os.Args[1] {
	case "mkbucket":
		_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(fs.Arg(0))})
	case "put":
		err = put(ctx, c, fs.Arg(0), fs.Arg(1), *n, *j, *plain)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "s3bench:", err)
	os.Exit(1)
}

func put(ctx context.Context, c *s3.Client, bucket, prefix string, n, j int, plain bool) error {
	start := time.Now()
	type object struct {
		i    int
		body []byte
	}
	work := make(chan object, j)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range j {
		wg.Go(func() {
			for o := range work {
				in := &s3.PutObjectInput{
					Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("%s%d", prefix, o.i)),
					Body: bytes.NewReader(o.body), ContentLength: aws.Int64(int64(len(o.body))),
				}
				if !plain {
					sum := sha256.Sum256(o.body)
					in.IfNoneMatch = aws.String("*")
					in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
					in.Metadata = map[string]string{"batchpipe-sha256": hex.EncodeToString(sum[:])}
				}
				if _, err := c.PutObject(ctx, in); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	r := bufio.NewReaderSize(os.Stdin, 1<<20)
	var rerr error
	size := 0
	for i := 0; rerr == nil; i++ {
		body := make([]byte, 0, size)
		for lines := 0; lines < n; lines++ {
			line, err := r.ReadSlice('\n')
			body = append(body, line...)
			if err == bufio.ErrBufferFull {
				lines--
				continue
			}
			if err != nil {
				if err != io.EOF {
					rerr = err
				}
				rerr = cmp.Or(rerr, io.EOF)
				break
			}
		}
		size = max(size, len(body))
		if len(body) > 0 {
			work <- object{i, body}
		}
	}
	close(work)
	wg.Wait()
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
	if rerr != io.EOF {
		return rerr
	}
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
