// Command mangen writes batchpipe's man pages, generated from its
// commands, into the directory given (make man: docs/man).
package main

import (
	"fmt"
	"os"

	"github.com/batchpipe/batchpipe/cmd"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mangen DIR")
		os.Exit(2)
	}
	if err := cmd.WriteManPages(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}
