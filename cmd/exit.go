package cmd

import "strconv"

// Exit statuses. The table in the root help and the README says the same.
const (
	exitOK           = 0
	exitFailed       = 1 // records not delivered
	exitUsage        = 2
	exitDeadLettered = 3 // completed, some records dead-lettered
	// exitUnavailable is sysexits' EX_UNAVAILABLE: something the run needs
	// (brokers, a topic, the metrics port) is not there at start. Not
	// EX_TEMPFAIL (75), which promises that a retry will do: a missing
	// topic waits for someone to create it.
	exitUnavailable = 69
	exitSignal      = 128             // + the signal's number, after a clean drain
	exitBrokenPipe  = exitSignal + 13 // stdout's reader left (SIGPIPE), as cat
)

// exitError carries an exit status whose message has already been printed.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// An unavailableError is a dependency missing at start: exit 69, no usage
// hint, since the command line may well be right.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }
