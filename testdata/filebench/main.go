// Command filebench is the practical limit for batchpipe's file sink, for
// testdata/bench.sh: the least a Go program must do to read lines and
// append them to a file in batches of n.
//
//	filebench -n 1000 OUT < IN
//
// One goroutine reads stdin in 256 KiB reads, as batchpipe does, one finds
// the lines and copies n of them at a time into a batch, one writes each
// batch with one write.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	n := flag.Int("n", 1000, "lines per batch")
	flag.Parse()
	if flag.NArg() != 1 || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: filebench [-n lines] OUT < IN")
		os.Exit(2)
	}
	if err := run(os.Stdin, flag.Arg(0), *n); err != nil {
		fmt.Fprintln(os.Stderr, "filebench:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, path string, n int) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()

	type read struct {
		buf []byte
		err error
	}
	free := make(chan []byte, 3)
	for range cap(free) {
		free <- make([]byte, 256<<10)
	}
	reads := make(chan read, cap(free))
	go func() {
		for {
			buf := <-free
			k, err := in.Read(buf)
			reads <- read{buf[:k], err}
			if err != nil {
				return
			}
		}
	}()

	batches := make(chan []byte, 1)
	empty := make(chan []byte, 3)
	for range cap(empty) {
		empty <- nil
	}
	written := make(chan error, 1)
	go func() {
		var err error
		for b := range batches {
			if err == nil {
				_, err = out.Write(b)
			}
			empty <- b[:0]
		}
		written <- err
	}()

	batch, lines := <-empty, 0
	var carry []byte
	for {
		r := <-reads
		p := r.buf
		if len(carry) > 0 {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				carry = append(carry, p...)
				p = nil
			} else {
				carry = append(carry, p[:i+1]...)
				batch, lines = append(batch, carry...), lines+1
				carry, p = carry[:0], p[i+1:]
				if lines == n {
					batches <- batch
					batch, lines = <-empty, 0
				}
			}
		}
		whole := p[:bytes.LastIndexByte(p, '\n')+1]
		carry = append(carry, p[len(whole):]...)
		start := 0
		for off := 0; off < len(whole); {
			off += bytes.IndexByte(whole[off:], '\n') + 1
			if lines++; lines == n {
				batches <- append(batch, whole[start:off]...)
				batch, lines, start = <-empty, 0, off
			}
		}
		batch = append(batch, whole[start:]...)
		free <- r.buf[:cap(r.buf)]
		if r.err != nil {
			if len(carry) > 0 {
				batch = append(append(batch, carry...), '\n')
			}
			if len(batch) > 0 {
				batches <- batch
			}
			close(batches)
			if werr := <-written; werr != nil {
				return werr
			}
			if r.err != io.EOF {
				return r.err
			}
			return nil
		}
	}
}
