// Command batchpipe batches a stream of records and delivers every batch to
// a file, a command or an HTTP endpoint.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/batchpipe/batchpipe/cmd"
	"github.com/batchpipe/batchpipe/internal/guard"
	"github.com/mattn/go-isatty"
)

func main() {
	guard.Main() // a guardian of commands, when started as one (internal/guard)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	// A hang-up drains like SIGTERM, unless nohup set it ignored: Notify
	// would undo that.
	if !signal.Ignored(syscall.SIGHUP) {
		signal.Notify(sigs, syscall.SIGHUP)
	}
	// Once SIGPIPE is notified, a write to a closed stdout or stderr fails
	// with EPIPE instead of killing batchpipe, so the run can report what
	// was not delivered. Nothing reads the channel: a full one drops the
	// signal. (signal.Ignore would do too, but commands run would inherit
	// it and report EPIPE instead of quietly dying as `cmd | head` expects.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	streams := cmd.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, ErrIsTerminal: isatty.IsTerminal(os.Stderr.Fd())}
	os.Exit(cmd.Main(os.Args[1:], streams, sigs))
}
