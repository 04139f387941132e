// Package sinks holds the batch destinations: files, commands, HTTP
// endpoints and S3 buckets, with what they share. The kafka sink and the
// Kafka dead letter live in package kafka.
//
// Where each idea lives:
//   - file.go, beneath.go: the file sink, and opening files beneath a
//     directory without following links out of it
//   - exec.go: the exec sink's lifecycle; exec_run.go one run of the
//     command, exec_output.go its held output and order, exec_stderr.go
//     its stderr lines, exec_args.go --args
//   - http.go, redact.go: the http sink, and secrets cut from its errors
//   - s3.go: the s3 sink
//   - template.go: placeholders ({seq}, {key}, …; PlaceholderTable) and
//     templates; runid.go: {run}
//   - format.go, compress.go: body formats and compression
//   - order.go: output in batch order (exec --keep-order)
package sinks
