package cmd

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// A sinkCommand is a sink and the subcommand that runs it.
type sinkCommand struct {
	name string
	what string // what it delivers to, for --help
	cmd  func(*options) *cobra.Command
}

// sinkCommands is the one list of sinks: the subcommands, the root's
// --help and the errors that name the sinks are drawn from it.
var sinkCommands = []sinkCommand{
	{"file", "a file", newFileCmd},
	{"exec", "a command", newExecCmd},
	{"http", "an HTTP endpoint", newHTTPCmd},
	{"kafka", "a Kafka topic", newKafkaCmd},
	{"s3", "an S3 bucket", newS3Cmd},
}

// sinkNames is "file, exec, …", for errors.
func sinkNames() string {
	names := make([]string, len(sinkCommands))
	for i, s := range sinkCommands {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// sinkNamed says whether name is a sink's.
func sinkNamed(name string) bool {
	return slices.ContainsFunc(sinkCommands, func(s sinkCommand) bool { return s.name == name })
}

// sinkTargets is "a file, a command, … or an S3 bucket", for --help.
func sinkTargets() string {
	var b strings.Builder
	for i, s := range sinkCommands {
		switch {
		case i == len(sinkCommands)-1:
			b.WriteString(" or ")
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(s.what)
	}
	return b.String()
}
