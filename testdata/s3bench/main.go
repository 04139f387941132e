// Command s3bench is the other side of testdata/bench-s3.sh.
//
//	s3bench mkbucket -endpoint URL BUCKET
//	s3bench put -endpoint URL -n 10000 -j 4 [-plain] BUCKET PREFIX
//
// put reads stdin whole, cuts it into objects of n lines, then PUTs them,
// j at a time, with the AWS SDK for Go v2 (as the s3 sink does, path
// style): the least a Go program must do to upload the same objects the
// same way, create-only with their SHA-256 (checked by the store, and in
// the metadata); -plain PUTs them with the SDK's defaults. It
// prints the seconds the PUTs took, reading and cutting left out. The
// credentials and region come from the environment.
package main

import (
	"bytes"
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
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var objects [][]byte
	for len(in) > 0 {
		end, lines := 0, 0
		for end < len(in) && lines < n {
			i := bytes.IndexByte(in[end:], '\n')
			if i < 0 {
				end = len(in)
				break
			}
			end += i + 1
			lines++
		}
		objects = append(objects, in[:end])
		in = in[end:]
	}
	start := time.Now()
	defer func() { fmt.Printf("%.3f\n", time.Since(start).Seconds()) }()
	work := make(chan int)
	errs := make(chan error, j)
	var wg sync.WaitGroup
	for range j {
		wg.Go(func() {
			for i := range work {
				in := &s3.PutObjectInput{
					Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("%s%d", prefix, i)),
					Body: bytes.NewReader(objects[i]), ContentLength: aws.Int64(int64(len(objects[i]))),
				}
				if !plain {
					sum := sha256.Sum256(objects[i])
					in.IfNoneMatch = aws.String("*")
					in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
					in.Metadata = map[string]string{"batchpipe-sha256": hex.EncodeToString(sum[:])}
				}
				_, err := c.PutObject(ctx, in)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range objects {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
