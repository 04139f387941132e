// Command batchpipe batches a stream of records and delivers every batch to
// a file, a command or an HTTP endpoint.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/batchpipe/batchpipe/cmd"
	"github.com/mattn/go-isatty"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2)
	streams := cmd.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, ErrIsTerminal: isatty.IsTerminal(os.Stderr.Fd())}
	os.Exit(cmd.Main(os.Args[1:], streams, sigs))
}
