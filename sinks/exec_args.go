// The exec sink's --args: records as command-line arguments, within the
// kernel's limits.

package sinks

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"syscall"

	"github.com/batchpipe/batchpipe/batcher"
)

// Command-line limits (Linux's; elsewhere, argLimit is conservative).
const (
	// maxArgStrlen is the longest single argument, its NUL included
	// (MAX_ARG_STRLEN: 32 pages).
	maxArgStrlen = 32 * 4096
	ptrSize      = 8
	// envReserve covers the BATCHPIPE_* variables added to every run,
	// a Kafka topic name (at most 249 bytes) included.
	envReserve = 1024
	// argHeadroom is kept free, as xargs does, against miscounting.
	argHeadroom = 4096
)

// argLimit is the room execve has for argument and environment strings with
// their pointers: a quarter of the stack limit, between 128 KiB and 6 MiB.
func argLimit() int {
	if runtime.GOOS != "linux" {
		return 256 << 10
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &rl); err != nil {
		return 128 << 10
	}
	return int(min(max(rl.Cur/4, 128<<10), 6<<20))
}

// argv builds command lines for --args.
type argv struct {
	argv  []string
	holes []int // {} in each argument; nil: records are appended
	m     int   // copies of a record on the command line
	fixed int   // bytes each record adds besides its copies
	room  int   // bytes left for records

	fixedArgs int // bytes of the arguments without {}, pointers included
}

func newArgv(path string, args, env []string) (*argv, error) {
	a := &argv{argv: args}
	used := len(path) + 1 // the kernel copies the file name too
	for _, e := range env {
		used += len(e) + 1 + ptrSize
	}
	used += envReserve + argHeadroom
	for i, arg := range args {
		n := 0
		if i > 0 {
			n = strings.Count(arg, "{}")
		}
		if n == 0 {
			a.fixedArgs += len(arg) + 1 + ptrSize
			continue
		}
		if a.holes == nil {
			a.holes = make([]int, len(args))
		}
		a.holes[i] = n
		a.m += n
		a.fixed += len(arg) - 2*n + 1 + ptrSize
	}
	if a.holes == nil {
		a.m, a.fixed = 1, 1+ptrSize
	}
	used += a.fixedArgs
	limit := argLimit()
	a.room = limit - used
	if a.room < a.m+a.fixed {
		return nil, fmt.Errorf("exec sink: the environment and arguments take %d of the %d bytes a command line may have: no room for records", used, limit)
	}
	return a, nil
}

// batchLimits: a batch of records r1…rn with Σ(len+1+overhead) ≤ maxBytes
// costs Σ(m·len + fixed) ≤ m·Σ(len+1+overhead) ≤ room, since
// m·(1+overhead) ≥ fixed.
func (a *argv) batchLimits() (maxBytes, perRecordOverhead int) {
	overhead := (a.fixed+a.m-1)/a.m - 1
	return a.room / a.m, max(overhead, 0)
}

// cost is what record r adds to the command line.
func (a *argv) cost(r []byte) int { return a.m*len(r) + a.fixed }

// build returns the command line for b and the records that cannot be
// arguments.
func (a *argv) build(b *batcher.Batch) ([]string, *batcher.RejectError) {
	n := b.Len()
	var rej *batcher.RejectError
	recs := make([]string, 0, n)
	for i := range n {
		r := b.Record(i)
		if err := a.refuse(r); err != nil {
			if rej == nil {
				rej = &batcher.RejectError{}
			}
			rej.Records = append(rej.Records, batcher.Rejected{Index: i,
				Err: fmt.Errorf("exec sink: %s: %w", b.Pos(i), err)})
			continue
		}
		recs = append(recs, string(r))
	}
	if a.holes == nil {
		out := make([]string, 0, len(a.argv)+len(recs))
		return append(append(out, a.argv...), recs...), rej
	}
	out := make([]string, 0, len(a.argv)+len(recs)*a.m)
	for i, arg := range a.argv {
		if a.holes[i] == 0 {
			out = append(out, arg)
			continue
		}
		for _, r := range recs {
			out = append(out, strings.ReplaceAll(arg, "{}", r))
		}
	}
	return out, rej
}

// refuse says why record r cannot be an argument, if it cannot.
func (a *argv) refuse(r []byte) error {
	if i := bytes.IndexByte(r, 0); i >= 0 {
		return fmt.Errorf("record holds a NUL byte (at byte %d), which cannot be in an argument", i)
	}
	if runtime.GOOS == "linux" && a.longest(len(r))+1 > maxArgStrlen {
		return fmt.Errorf("record of %d bytes is too long for an argument (at most %d bytes)", len(r), maxArgStrlen-1)
	}
	if a.cost(r) > a.room {
		return fmt.Errorf("record of %d bytes does not fit on a command line (%d bytes free)", len(r), a.room)
	}
	return nil
}

// longest is the length of the longest argument made from a record of n
// bytes.
func (a *argv) longest(n int) int {
	if a.holes == nil {
		return n
	}
	l := 0
	for i, h := range a.holes {
		if h > 0 {
			l = max(l, len(a.argv[i])-2*h+h*n)
		}
	}
	return l
}

// check guards against a batch cut too large for the command line, which
// the batching limits should make impossible.
func (a *argv) check(argv []string) error {
	size := -a.fixedArgs
	for _, s := range argv {
		size += len(s) + 1 + ptrSize
	}
	if size > a.room {
		return batcher.Permanent(fmt.Errorf("exec sink: records take %d bytes of command line, more than the %d free", size, a.room))
	}
	return nil
}
