package cmd

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/spf13/cobra"
)

const fileExamples = `  # append batches to a file, fsynced before they count as delivered
  tail -F app.log | batchpipe -n 500 -t 2s file --fsync batched.log

  # one file per batch, written atomically; directories are created
  batchpipe -n 1000 file --per-batch 'out/{date}/{run}-{seq}.ndjson' < events.ndjson

  # exactly once from Kafka: files named by their offsets
  batchpipe --kafka-brokers localhost:9092 --topic orders --group loader --exactly-once --until-end \
    file --per-batch 'out/{partition}/{first_offset}-{last_offset}'

  # to stdout
  seq 10 | batchpipe -n 3 file -`

// samePath reports whether a and b name the same file: the same path, or
// the same existing file by another name.
func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// fileSpec is the file sink's settings.
type fileSpec struct {
	o        *options
	args     []string
	path     string // args[0], set by validate; "" with --per-batch
	perBatch string
	opt      sinks.FileOptions
	format   bodyFormat
	pf       parquetFlags
}

func (s *fileSpec) validate(o *options) error {
	switch {
	case s.perBatch != "" && len(s.args) > 0:
		return usagef("file: give PATH or --per-batch, not both")
	case s.perBatch == "" && len(s.args) != 1:
		return usagef("file: give one PATH (- for stdout) or --per-batch TEMPLATE")
	case s.perBatch == "":
		s.path = s.args[0]
	}
	switch {
	case s.perBatch == "" && s.path == "-" && s.opt.Fsync:
		return usagef("file: --fsync makes no sense with stdout")
	case s.perBatch == "" && o.deadLetter != "" && samePath(o.deadLetter, s.path):
		return usagef("file: --dead-letter %s is the output too: failed batches would be appended to what they failed to reach", o.deadLetter)
	case !o.kafka.enabled() && (strings.Contains(s.perBatch, "{topic}") || strings.Contains(s.perBatch, "{partition}")):
		return usagef("file: {topic} and {partition} are those of Kafka records: give --topic, or take them out of --per-batch")
	case s.format.parquet && s.perBatch == "":
		return usagef("file: --format parquet writes each batch as a whole file: give --per-batch TEMPLATE, not a file to append to")
	}
	if err := s.pf.check(o, "file", &s.format); err != nil {
		return err
	}
	s.opt.Format = s.format.Format
	return nil
}

func (s *fileSpec) open(env sinkEnv) (batcher.Sink, error) {
	o := s.o
	switch {
	case s.perBatch != "":
		pb, err := sinks.NewPerBatch(s.perBatch, s.opt.Format)
		if err != nil {
			return nil, err
		}
		pb.FollowSymlinks = o.followSymlinks
		pb.Compress = s.opt.Compress
		if s.format.parquet {
			if pb.Encoder, err = s.pf.encoder(env.diag); err != nil {
				return nil, err
			}
		}
		return pb, nil
	case s.path == "-":
		if err := o.checkStdout(); err != nil {
			return nil, err
		}
		return sinks.NewWriter(env.out, "stdout", s.opt.Format).Compressed(s.opt.Compress), nil
	default:
		s.opt.FollowSymlinks = o.followSymlinks
		return sinks.OpenFile(s.path, s.opt)
	}
}

func newFileCmd(o *options) *cobra.Command {
	s := &fileSpec{o: o}
	c := &cobra.Command{
		Use:   "file [flags] PATH | file --per-batch TEMPLATE",
		Short: "Append batches to a file or stdout, or write one file per batch",
		Long: `Append each batch (records joined and terminated by the delimiter) to PATH,
created with mode 0644 if missing; PATH - is stdout. Batches are appended in
the order they were read, at any -j: each waits until every batch before it
is written, dead-lettered or given up, so the output is the input, in order.

With --per-batch, each batch goes to a file of its own named from TEMPLATE,
with placeholders:
` + sinks.PlaceholderHelp + `.

A value from the input ({topic}, {key}) keeps letters, digits, '.', '_'
and '-'; any other byte becomes %XX ('/' is %2F), "." and ".." become %2E
and %2E%2E, and an empty key is "%": no value climbs out of the template's
directory, and two keys never share a file. A name component longer than
240 bytes (a key of 10 KB, or 100 '/') is cut to its first 160 bytes or
so, followed by %~ and the SHA-256 of the whole component in hex, which no
other key gives. Below the template's fixed directory (its text before the
first placeholder, up to a '/'), no symbolic link is followed: a link
planted at out/<key> fails that key's batches, naming it, unless
--follow-symlinks. Each file is written to a
temporary file in the same directory, fsynced and linked into place, so a
reader never sees a partial file; missing directories are created. A file
already there with the batch's bytes is that batch, delivered before (a
retry, or a run after a crash with --exactly-once); with other bytes it is
never overwritten: the batch fails, naming the file. A template that would
give two batches of a run one name (no {seq}, nor {batch_id} or an offset)
is refused; {seq} starts at 1 in every run, so put {run} in it too where
runs write to the same place.

` + parquetHelp + ` It needs --per-batch.`,
		Example:     fileExamples,
		Annotations: map[string]string{summaryKey: "1,2"},
		RunE: func(c *cobra.Command, args []string) error {
			s.args = args
			return o.run(s)
		},
	}
	c.Flags().StringVar(&s.perBatch, "per-batch", "", "write each batch to its own file named from this template ("+sinks.PlaceholderList+")")
	c.Flags().BoolVar(&s.opt.Fsync, "fsync", false, "fsync the file after each batch before it counts as delivered")
	c.Flags().Var(&s.format, "format", "body format: lines (records as read), ndjson (one JSON value per line; blank lines pass as blank lines, a byte order mark is left out), json (an array per batch) or parquet (a Parquet file per batch, with --per-batch)")
	s.pf.add(c.Flags(), &s.opt.Compress, "compress each batch: gzip or zstd, with :LEVEL if given; appended, each batch is one gzip member or zstd frame, so the file reads with zcat or zstdcat")
	return c
}
