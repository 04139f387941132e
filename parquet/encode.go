package parquet

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"

	"github.com/batchpipe/batchpipe/batcher"
	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

// Options are an Encoder's settings. The zero value writes zstd pages of
// 256 KiB before compression, in row groups of DefaultRowGroupRows rows.
type Options struct {
	// Schema is the columns; nil infers them from the first batch.
	Schema *Schema
	// Codec compresses pages: zstd (the default), gzip, snappy or none.
	Codec string
	// RowGroupRows is the most rows in a row group; default
	// DefaultRowGroupRows.
	RowGroupRows int64
	// PageSize is the most bytes of a column's page before encoding and
	// compression; default DefaultPageSize.
	PageSize int
	// Inferred is called once with the schema inferred from the first
	// batch, when Schema is nil.
	Inferred func(*Schema)
}

const (
	// DefaultRowGroupRows is DuckDB's row group size.
	DefaultRowGroupRows = 122880
	DefaultPageSize     = 256 << 10
)

// Codecs names the codecs, for help.
const Codecs = "zstd, gzip, snappy or none"

var codecs = map[string]compress.Codec{
	"":       &pq.Zstd,
	"zstd":   &pq.Zstd,
	"gzip":   &pq.Gzip,
	"snappy": &pq.Snappy,
	"none":   &pq.Uncompressed,
}

// CheckCodec reports whether name is a codec.
func CheckCodec(name string) error {
	if _, ok := codecs[name]; !ok {
		return fmt.Errorf("unknown parquet codec %q (codecs: %s)", name, Codecs)
	}
	return nil
}

// An Encoder writes each batch as one Parquet file. It is safe for
// concurrent use. The same batch always gives the same bytes: the file holds
// no time, no random id and no version of batchpipe.
//
// Memory: a batch's file is built in memory (compressed), beside the
// batch itself and the column buffers of one row group (about the size of
// the row group's records, typed); rows are shredded and handed to the
// writer 256 at a time, so no second copy of the batch is made as rows.
type Encoder struct {
	opt   Options
	codec compress.Codec

	mu     sync.Mutex // guards schema while it is inferred
	schema *Schema
}

// NewEncoder checks opt.
func NewEncoder(opt Options) (*Encoder, error) {
	if err := CheckCodec(opt.Codec); err != nil {
		return nil, err
	}
	if opt.RowGroupRows <= 0 {
		opt.RowGroupRows = DefaultRowGroupRows
	}
	if opt.PageSize <= 0 {
		opt.PageSize = DefaultPageSize
	}
	return &Encoder{opt: opt, codec: codecs[opt.Codec], schema: opt.Schema}, nil
}

// Memory is about the most that encoding a batch of batchBytes holds
// beyond the batch: the column buffers of a row group and the parsed text
// (about twice the records), the file (at most the records again, before
// compression shrinks it), and two pages a column.
func (e *Encoder) Memory(batchBytes int) int64 {
	leaves := 16 // an inferred schema's, until it is known
	if e.opt.Schema != nil {
		leaves = e.opt.Schema.leaves
	}
	return 3*int64(batchBytes) + 2*int64(leaves)*int64(e.opt.PageSize) + 1<<20
}

// chunk is how many rows are shredded before they are handed to the writer.
const chunk = 256

// Encode returns b as a Parquet file, with the records that do not fit the
// schema, each with its reason; the file holds all the others. When every
// record is rejected the file is nil. An error is the writer's own.
func (e *Encoder) Encode(b *batcher.Batch) ([]byte, []batcher.Rejected, error) {
	s := e.schemaFor(b)
	opts := []pq.WriterOption{
		s.pq,
		// A fixed name, not the library's default with its version: a
		// batch written again after an upgrade is found in place.
		&pq.WriterConfig{CreatedBy: "batchpipe"},
		pq.Compression(e.codec),
		pq.PageBufferSize(e.opt.PageSize),
		pq.MaxRowsPerRowGroup(e.opt.RowGroupRows),
		pq.DataPageStatistics(true),
	}
	if sp, ok := b.Span(); ok {
		opts = append(opts,
			pq.KeyValueMetadata("batchpipe.batch_id", sp.ID()),
			pq.KeyValueMetadata("batchpipe.topic", sp.Topic),
			pq.KeyValueMetadata("batchpipe.partition", strconv.FormatInt(int64(sp.Partition), 10)),
			pq.KeyValueMetadata("batchpipe.first_offset", strconv.FormatInt(sp.First, 10)),
			pq.KeyValueMetadata("batchpipe.last_offset", strconv.FormatInt(sp.Last, 10)))
	}
	var out bytes.Buffer
	w := pq.NewWriter(&out, opts...)
	sh := newShredder(s)
	var rej []batcher.Rejected
	rows := make([]pq.Row, 0, chunk)
	var vals pq.Row // the values of all rows of a chunk, back to back
	n := 0
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		_, err := w.WriteRows(rows)
		rows, vals = rows[:0], vals[:0]
		sh.reset()
		return err
	}
	for i := range b.Len() {
		start := len(vals)
		var err error
		vals, err = sh.row(vals, b.Record(i))
		if err != nil {
			rej = append(rej, batcher.Rejected{Index: i, Err: fmt.Errorf("%s does not fit the parquet schema: %w", recordName(b, i), err)})
			continue
		}
		rows = append(rows, vals[start:len(vals):len(vals)])
		n++
		if len(rows) == chunk {
			if err := flush(); err != nil {
				return nil, nil, fmt.Errorf("parquet: write rows: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return nil, nil, fmt.Errorf("parquet: write rows: %w", err)
	}
	if n == 0 {
		return nil, rej, nil
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("parquet: close: %w", err)
	}
	return out.Bytes(), rej, nil
}

// schemaFor returns the schema, inferring it from b if there is none yet.
func (e *Encoder) schemaFor(b *batcher.Batch) *Schema {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.schema == nil {
		e.schema = Infer(b)
		if e.opt.Inferred != nil {
			e.opt.Inferred(e.schema)
		}
	}
	return e.schema
}

// recordName locates record i of b for errors: by topic, partition and
// offset when it came from Kafka, else by number and byte offset.
func recordName(b *batcher.Batch, i int) string {
	if m := b.Meta(i); m != nil {
		return fmt.Sprintf("record %s[%d] offset %d", m.Topic, m.Partition, m.Offset)
	}
	return b.Pos(i).String()
}
