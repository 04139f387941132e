package cmd

import "strconv"

// Exit statuses. The table in the root help and the README says the same.
const (
	exitOK           = 0
	exitFailed       = 1 // records not delivered
	exitUsage        = 2
	exitDeadLettered = 3               // completed, some records dead-lettered
	exitSignal       = 128             // + the signal's number, after a clean drain
	exitBrokenPipe   = exitSignal + 13 // stdout's reader left (SIGPIPE), as cat
)

// exitError carries an exit status whose message has already been printed.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }
