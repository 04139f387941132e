package cmd

import (
	"fmt"
	"io"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/parquet"
	"github.com/batchpipe/batchpipe/sinks"
	"github.com/spf13/pflag"
)

// bodyFormat is a --format flag that also takes parquet, where a sink
// writes each batch as a whole file of its own.
type bodyFormat struct {
	sinks.Format
	parquet bool
}

func (f *bodyFormat) Set(s string) error {
	if s == "parquet" {
		f.parquet = true
		return nil
	}
	f.parquet = false
	return f.Format.Set(s)
}

func (f *bodyFormat) String() string {
	if f.parquet {
		return "parquet"
	}
	return f.Format.String()
}

// parquetFlags are the settings of --format parquet.
type parquetFlags struct {
	schema   string
	codec    string // set by check
	compress compressFlag
	rowGroup int64
	pageSize byteSize
	flags    *pflag.FlagSet
}

// compressFlag is a sink's --compress, which with --format parquet names
// the codec of the file's pages instead, snappy too: a Parquet file is not
// compressed whole.
type compressFlag struct {
	c      *sinks.Compression
	snappy bool
}

func (f *compressFlag) Set(s string) error {
	f.snappy = s == "snappy"
	if f.snappy {
		return f.c.Set("none")
	}
	return f.c.Set(s)
}

func (f *compressFlag) String() string {
	if f.snappy {
		return "snappy"
	}
	return f.c.String()
}

func (f *compressFlag) Type() string { return f.c.Type() }

const parquetHelp = `With --format parquet, each batch is one Parquet file, with the columns of
--parquet-schema FILE: a JSON list of {"name", "type", "path", "required"}
(example in docs/parquet.md), of types ` + parquet.TypeNames + `.
A record that is not a JSON object, lacks a required field or holds a value
that is not exactly of its column's type is rejected on its own, with the
reason (--dead-letter, or counted undelivered), and the rest of its batch is
written. --parquet-schema infer derives the columns from the first batch and
prints them to stderr, to pin in a file; not with --exactly-once, where a
batch written again must give the same bytes. The same batch always gives
the same file: no time or random id is in it; with Kafka its key-value
metadata holds batchpipe.batch_id, topic, partition, first_offset and
last_offset.`

// add adds the flags, and --compress into c, described by help.
func (p *parquetFlags) add(fs *pflag.FlagSet, c *sinks.Compression, help string) {
	p.flags = fs
	p.compress.c = c
	fs.Var(&p.compress, "compress", help+"; with --format parquet, the codec of its pages: "+parquet.Codecs+" (zstd unless given)")
	fs.StringVar(&p.schema, "parquet-schema", "", "with --format parquet: the columns, a JSON file (see --help), or infer to derive them from the first batch")
	fs.Int64Var(&p.rowGroup, "parquet-row-group-rows", parquet.DefaultRowGroupRows, "with --format parquet: the most rows in a row group")
	p.pageSize = parquet.DefaultPageSize
	fs.Var(&p.pageSize, "parquet-page-size", "with --format parquet: the most bytes of a column's page before encoding and compression")
}

// check refuses parquet flags without --format parquet, and a parquet run
// without a schema or with infer under --exactly-once. With parquet it
// takes --compress for the codec, and leaves the file uncompressed whole.
func (p *parquetFlags) check(o *options, name string, f *bodyFormat) error {
	if !f.parquet {
		for _, fl := range []string{"parquet-schema", "parquet-row-group-rows", "parquet-page-size"} {
			if p.flags.Changed(fl) {
				return usagef("%s: --%s is for --format parquet", name, fl)
			}
		}
		if p.compress.snappy {
			return usagef("%s: --compress snappy is for --format parquet (takes gzip, zstd or none otherwise)", name)
		}
		return nil
	}
	switch {
	case p.schema == "":
		return usagef("%s: --format parquet needs --parquet-schema FILE (or infer, to try things out)", name)
	case p.schema == "infer" && o.kafka.exactlyOnce:
		return usagef("%s: --parquet-schema infer with --exactly-once: a batch written again after a restart could be given other columns, and so other bytes; give a schema file (run once without --exactly-once to print one)", name)
	case p.rowGroup <= 0:
		return usagef("%s: --parquet-row-group-rows must be at least 1", name)
	case p.pageSize <= 0:
		return usagef("%s: --parquet-page-size must be at least 1 byte", name)
	case p.compress.c.Level != 0:
		return usagef("%s: --compress %s: with --format parquet the codec takes no level", name, p.compress.String())
	}
	switch {
	case !p.flags.Changed("compress"):
		p.codec = "zstd"
	case p.compress.snappy:
		p.codec = "snappy"
	case p.compress.c.Algo == "":
		p.codec = "none"
	default:
		p.codec = p.compress.c.Algo
	}
	*p.compress.c = sinks.Compression{}
	return parquet.CheckCodec(p.codec)
}

// encoder reads the schema file and returns the encoder; an inferred
// schema is shown on diag.
func (p *parquetFlags) encoder(diag io.Writer) (*parquet.Encoder, error) {
	opt := parquet.Options{Codec: p.codec, RowGroupRows: p.rowGroup, PageSize: int(p.pageSize)}
	if p.schema == "infer" {
		opt.Inferred = func(s *parquet.Schema) {
			fmt.Fprintf(diag, "batchpipe: parquet schema inferred from the first batch (save it to a file for --parquet-schema):\n%s", s.JSON())
		}
	} else {
		s, err := parquet.ReadSchema(p.schema)
		if err != nil {
			return nil, refused(err)
		}
		opt.Schema = s
	}
	return parquet.NewEncoder(opt)
}

// A memorySink holds memory of its own while it delivers a batch of up to
// maxBytes, beyond the batch: a Parquet file's column buffers and pages.
type memorySink interface {
	DeliveryMemory(maxBytes int) int64
}

// deliveryMemory is what the sink's deliveries in flight (-j) hold, for
// the soft memory limit: without it the collector ran without end.
func deliveryMemory(s batcher.Sink, cfg batcher.Config) int64 {
	if m, ok := s.(memorySink); ok {
		return int64(cfg.Parallel) * m.DeliveryMemory(cfg.MaxBytes)
	}
	return 0
}
