// Package cmd turns batchpipe's command line into a configured pipeline,
// runs it and maps how it ended to an exit status.
//
// Where each idea lives:
//   - root.go: the root command, its flags and Main, the one place errors
//     become exit statuses
//   - sinks.go: the list of sinks; file.go, exec.go, http.go, kafka_sink.go,
//     s3.go: each sink's subcommand, its flags into the sink's options
//   - kafka.go: the Kafka source's flags, into what package kafka opens
//   - config.go: the flags into a batcher.Config
//   - run.go: run, open → run → finish → report; open.go: each step of
//     the opening
//   - shutdown.go: signals, as a small state machine: the first drains, a
//     second abandons, --shutdown-timeout bounds the drain
//   - streams.go: the standard streams and the terminal checks on them
//   - report.go: the summary, the stats file and the exit status of a run
//   - exit.go: the exit statuses and their table (exitTable)
//   - env.go: BATCHPIPE_* variables as flags; size.go: byte sizes;
//     stdout.go: a closed stdout refused at start
package cmd
