// Command httpbench is the other side of testdata/bench-http.sh.
//
//	httpbench serve [-delay D]       listen on 127.0.0.1, print the URL, discard bodies
//	                                 (answering each D after reading it: a slow server)
//	httpbench post -n 1000 -j 4 URL  post stdin's lines in bodies of n lines, j at a time
//
// post is the practical limit for batchpipe's http sink: the least a Go
// program must do to read lines and post them over keep-alive.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: httpbench serve | post [-n lines] [-j parallel] URL")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "post":
		err = post(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpbench:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	delay := fs.Duration("delay", 0, "answer each request this long after reading it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("http://%s/\n", ln.Addr()) // the readiness line
	os.Stdout.Close()
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if *delay > 0 {
			t := time.NewTimer(*delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

func post(args []string) error {
	fs := flag.NewFlagSet("post", flag.ContinueOnError)
	n := fs.Int("n", 1000, "lines per request")
	j := fs.Int("j", 1, "requests in flight")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("post: give one URL")
	}
	url := fs.Arg(0)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *j}}

	bodies := make(chan []byte)
	free := make(chan []byte, *j+1)
	for range *j + 1 {
		free <- nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, *j)
	for range *j {
		wg.Go(func() {
			for b := range bodies {
				resp, err := client.Post(url, "text/plain", bytes.NewReader(b))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						err = fmt.Errorf("post: %s", resp.Status)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
				free <- b[:0]
			}
		})
	}
	r := bufio.NewReaderSize(os.Stdin, 256<<10)
	body, lines := <-free, 0
	for {
		line, err := r.ReadSlice('\n')
		body = append(body, line...)
		if len(line) > 0 && err != bufio.ErrBufferFull {
			lines++
		}
		if lines == *n || (err == io.EOF && len(body) > 0) {
			bodies <- body
			body, lines = <-free, 0
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
	}
	close(bodies)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
