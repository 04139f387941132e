package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/batchpipe/batchpipe/batcher"
)

// A Format lays out a batch's records as the body a sink writes or sends.
// It implements the flag.Value interface (Set, String, Type), so a command
// can take it with Flags().Var.
type Format uint8

const (
	// Lines is the records joined and terminated by the delimiter, exactly
	// as read. The default.
	Lines Format = iota
	// NDJSON is one JSON value per line, each ended by '\n'. Every record
	// must be valid JSON (RFC 8259, so UTF-8), or blank: a blank record (empty,
	// or only spaces, tabs and CRs) is a blank line, which NDJSON readers
	// skip. A UTF-8 byte order mark starting a record is left out, in JSON
	// too. A record holding raw line
	// breaks, such as pretty-printed JSON read with -0, has each CR and LF
	// turned into a space: in valid JSON they can only be whitespace
	// between tokens, so the value is unchanged and fits on one line.
	// Nothing else is altered.
	NDJSON
	// JSON is a JSON array of the records, as they were read, followed by
	// '\n'. Every record must be valid JSON.
	JSON
	numFormats
)

var formatNames = [numFormats]string{"lines", "ndjson", "json"}

var contentTypes = [numFormats]string{"text/plain", "application/x-ndjson", "application/json"}

// ParseFormat returns the format named s: lines, ndjson or json.
func ParseFormat(s string) (Format, error) {
	for f, name := range formatNames {
		if s == name {
			return Format(f), nil
		}
	}
	if s == "parquet" {
		// A Parquet file has its footer at the end: it is one whole file.
		return 0, errors.New("parquet is for whole files, one a batch (file --per-batch, s3): not a body sent or appended")
	}
	return 0, fmt.Errorf("unknown format %q (formats: lines, ndjson, json)", s)
}

func (f Format) String() string {
	if f < numFormats {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", f)
}

// Set parses s into f, for command-line flags.
func (f *Format) Set(s string) error {
	v, err := ParseFormat(s)
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// Type names the flag's value in help.
func (Format) Type() string { return "format" }

// ContentType is the media type of a body in f: text/plain (the bytes are
// passed through, so no charset is claimed), application/x-ndjson or
// application/json.
func (f Format) ContentType() string {
	if f < numFormats {
		return contentTypes[f]
	}
	return "application/octet-stream"
}

// Encode appends the body of b in format f to dst and returns it, with the
// records that cannot be written in f (not valid JSON), by index in b; the
// body holds all the others. When every record is rejected nothing is
// appended, not even the brackets of an empty array.
//
// Encode allocates only for rejected records and when dst must grow, so a
// buffer reused from batch to batch makes it allocation-free.
func (f Format) Encode(dst []byte, b *batcher.Batch) ([]byte, []batcher.Rejected) {
	switch f {
	case NDJSON:
		return encodeNDJSON(dst, b)
	case JSON:
		return encodeJSON(dst, b)
	default:
		return append(dst, b.Bytes()...), nil
	}
}

// Body returns the body of b in format f and the records rejected, as
// Encode does. For Lines the body is b.Bytes() itself, not copied; for the
// others it is built in *buf, which grows as needed and can be reused for
// another batch once the body is no longer in use.
func (f Format) Body(buf *[]byte, b *batcher.Batch) ([]byte, []batcher.Rejected) {
	if f == Lines {
		return b.Bytes(), nil
	}
	body, rej := f.Encode((*buf)[:0], b)
	*buf = body
	return body, rej
}

// bom is the UTF-8 byte order mark, which an editor may put at the start
// of a file. RFC 8259 lets a JSON reader ignore it; it is no part of the
// value.
var bom = []byte("\xEF\xBB\xBF")

// blank reports whether r holds only JSON whitespace, or nothing.
func blank(r []byte) bool {
	for _, c := range r {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

func encodeNDJSON(dst []byte, b *batcher.Batch) ([]byte, []batcher.Rejected) {
	var rej []batcher.Rejected
	for i := range b.Len() {
		r := bytes.TrimPrefix(b.Record(i), bom)
		// A blank line goes as read: NDJSON readers (jq, ClickHouse)
		// skip it. Delivered, not dropped.
		if err := checkJSON(r); err != nil && !blank(r) {
			rej = append(rej, batcher.Rejected{Index: i, Err: notJSON(b, i, err)})
			continue
		}
		start := len(dst)
		dst = append(dst, r...)
		if bytes.IndexByte(r, '\n') >= 0 || bytes.IndexByte(r, '\r') >= 0 {
			for j := start; j < len(dst); j++ {
				if dst[j] == '\n' || dst[j] == '\r' {
					dst[j] = ' '
				}
			}
		}
		dst = append(dst, '\n')
	}
	return dst, rej
}

func encodeJSON(dst []byte, b *batcher.Batch) ([]byte, []batcher.Rejected) {
	var rej []batcher.Rejected
	start := len(dst)
	for i := range b.Len() {
		r := bytes.TrimPrefix(b.Record(i), bom)
		if err := checkJSON(r); err != nil {
			rej = append(rej, batcher.Rejected{Index: i, Err: notJSON(b, i, err)})
			continue
		}
		if len(dst) == start {
			dst = append(dst, '[')
		} else {
			dst = append(dst, ',')
		}
		dst = append(dst, r...)
	}
	if len(dst) > start {
		dst = append(dst, ']', '\n')
	}
	return dst, rej
}

var errNotUTF8 = errors.New("invalid UTF-8")

// checkJSON reports whether r is one valid JSON value. json.Valid accepts
// invalid UTF-8 inside strings, which RFC 8259 and most receivers do not.
func checkJSON(r []byte) error {
	if json.Valid(r) {
		if !utf8.Valid(r) {
			return errNotUTF8
		}
		return nil
	}
	// The slow path, only for bad records: say what is wrong and where.
	var v json.RawMessage
	err := json.Unmarshal(r, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%v (after byte %d of the record)", se, se.Offset)
	}
	if err == nil { // not reached: Unmarshal and Valid agree
		err = errors.New("invalid")
	}
	return err
}

func notJSON(b *batcher.Batch, i int, err error) error {
	return fmt.Errorf("%s is not valid JSON: %w", recordName(b, i), err)
}

// recordName locates record i of b for errors: by topic, partition and
// offset when it came from Kafka, else by number and byte offset.
func recordName(b *batcher.Batch, i int) string {
	if m := b.Meta(i); m != nil {
		return fmt.Sprintf("record %s[%d] offset %d", m.Topic, m.Partition, m.Offset)
	}
	return b.Pos(i).String()
}
