package batcher

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A Record is one input record. Data excludes the delimiter.
//
// A source that cannot take a record whole (one longer than the record
// limit) sends it with Err set instead, and the record takes the failure
// path on its own.
//
// A Block record stands for a run of records as read: Data holds one or
// more whole records, each followed by the delimiter, and Meta and Err are
// nil. A stream source sends its reads this way; the aggregator finds the
// records as it copies them into batches, which costs less than a Record
// per record.
type Record struct {
	Data  []byte
	Meta  *Meta // source metadata; nil for stdin
	Err   error
	Block bool
}

// ErrCutShort is the error of a record that a stop cut short: its start was
// read, its end was not. It counts as undelivered, and ends the run
// non-zero, but does not stop the records read before it.
var ErrCutShort = errors.New("stopped in the middle of a record")

// A TooLargeError is a record longer than the record limit. It is not
// held in memory: the source skips its bytes, or, with Body, keeps them
// aside for a dead letter that can take them (a RecordDeadLetter). Without
// one it counts as undelivered.
type TooLargeError struct {
	Size  int64 // bytes in the record, without the delimiter
	Limit int64

	// Body, if set, reads the record's bytes, without the delimiter; the
	// pipeline closes it.
	Body io.ReadCloser
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("record of %d bytes is larger than the record limit (%d bytes)", e.Size, e.Limit)
}

// Meta describes where a record came from, for sources that know more than
// a byte stream does (Kafka).
type Meta struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Headers   []Header
	Timestamp time.Time

	// PlanEnd, if not 0, says the record belongs to a batch whose cut was
	// planned before (--exactly-once): the batch ends at offset PlanEnd-1,
	// whatever the size and time limits say.
	PlanEnd int64

	// Assignment tells apart the times the record's partition was assigned
	// to this run: a rebalance may give it back from a later offset, when
	// another member has delivered meanwhile. With a Plan hook, records of
	// two assignments never share a batch.
	Assignment int64
}

// A Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Reason says why a batch was flushed.
type Reason uint8

const (
	ReasonSize     Reason = iota // it held --max-records records
	ReasonBytes                  // the next record would have pushed it past --max-bytes
	ReasonLinger                 // its oldest record waited --linger
	ReasonEOF                    // input ended
	ReasonSignal                 // a shutdown signal arrived
	ReasonFlush                  // an explicit flush (SIGUSR1)
	ReasonKeys                   // a new key found MaxOpenKeys batches open: the oldest went
	ReasonBuffered               // the open batches held MaxBufferedBytes: the largest went
	ReasonPlanned                // its last record ends a cut planned before (exactly once)
	ReasonKey                    // its key's next record cannot join it (see aggregator.addKeyed)
	numReasons
)

var reasonNames = [numReasons]string{"size", "bytes", "linger", "eof", "signal", "flush", "keys", "buffered", "planned", "key"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// Pos locates a record in the input: its 1-based number and the byte offset
// of its first byte.
type Pos struct {
	Record int64
	Offset int64
}

func (p Pos) String() string {
	return fmt.Sprintf("record %d at byte offset %d", p.Record, p.Offset)
}

// A Batch is a run of consecutive records. Its records are stored back to
// back in one buffer, each followed by the delimiter, so the "lines" body of
// a batch is the buffer itself and building a batch allocates nothing per
// record.
type Batch struct {
	Seq    int64  // 1, 2, 3… in flush order
	Reason Reason // why it was flushed
	First  Pos    // position of its first record
	Delim  byte

	// Key is the batch's key with Config.Key (Keyed): all its records
	// have it.
	Key   string
	Keyed bool
	// Reformed says the batch was cut where an earlier run planned it.
	Reformed bool
	// ID is the batch's identity when its records are of one Kafka
	// partition, TOPIC-PARTITION-FIRST-LAST; else "". Parts made by Pick
	// and Slice keep it: dead letters name the batch they came from.
	ID string

	// Attempt is the delivery attempt in progress, from 1.
	Attempt int

	buf  []byte
	ends []int   // ends[i] is the index in buf of record i's delimiter
	meta []*Meta // nil unless some record has metadata
	pos  []Pos   // each record's position in a batch made by Pick; else nil
}

// Len is the number of records.
func (b *Batch) Len() int { return len(b.ends) }

// Size is the number of bytes: records plus one delimiter each.
func (b *Batch) Size() int { return len(b.buf) }

// Bytes returns the records joined and terminated by the delimiter, exactly
// as they were read. The caller must not modify or keep it.
func (b *Batch) Bytes() []byte { return b.buf }

// start is the index in buf of record i's first byte.
func (b *Batch) start(i int) int {
	if i == 0 {
		return 0
	}
	return b.ends[i-1] + 1
}

// Record returns record i without its delimiter.
func (b *Batch) Record(i int) []byte {
	return b.buf[b.start(i):b.ends[i]:b.ends[i]]
}

// Meta returns record i's metadata, or nil.
func (b *Batch) Meta(i int) *Meta {
	if b.meta == nil {
		return nil
	}
	return b.meta[i]
}

// Pos returns the position of record i.
func (b *Batch) Pos(i int) Pos {
	if b.pos != nil {
		return b.pos[i]
	}
	return Pos{Record: b.First.Record + int64(i), Offset: b.First.Offset + int64(b.start(i))}
}

// Picked reports whether b was made by Pick: some of a batch's records,
// not necessarily consecutive.
func (b *Batch) Picked() bool { return b.pos != nil }

// Slice returns records [i, j) as a batch sharing b's memory, for sinks that
// split a batch (an HTTP 413). It keeps b's Seq, Reason and Attempt.
func (b *Batch) Slice(i, j int) *Batch {
	s := *b
	start, end := b.start(i), b.start(j)
	s.buf = b.buf[start:end:end]
	s.ends = make([]int, j-i)
	for k := range s.ends {
		s.ends[k] = b.ends[i+k] - start
	}
	if b.meta != nil {
		s.meta = b.meta[i:j:j]
	}
	if b.pos != nil {
		s.pos = b.pos[i:j:j]
	}
	s.First = b.Pos(i)
	return &s
}

// Pick returns a new batch holding copies of the listed records, in order.
// Each keeps its position in the input.
func (b *Batch) Pick(idx []int) *Batch {
	p := &Batch{Seq: b.Seq, Reason: b.Reason, Delim: b.Delim, Attempt: b.Attempt, ID: b.ID, Key: b.Key, Keyed: b.Keyed,
		pos: make([]Pos, 0, len(idx))}
	if len(idx) > 0 {
		p.First = b.Pos(idx[0])
	}
	for _, i := range idx {
		p.buf = append(p.buf, b.Record(i)...)
		p.buf = append(p.buf, b.Delim)
		p.ends = append(p.ends, len(p.buf)-1)
		p.pos = append(p.pos, b.Pos(i))
		if b.meta != nil {
			p.meta = append(p.meta, b.meta[i])
		}
	}
	return p
}

// drop removes the records listed, by increasing index, in place; the
// others keep their positions in the input.
func (b *Batch) drop(idx []int) {
	n := b.Len()
	pos := b.pos
	if pos == nil {
		pos = make([]Pos, n)
		for i := range n {
			pos[i] = b.Pos(i)
		}
	}
	k, w, kept, prev := 0, 0, 0, -1
	for i := range n {
		start, end := prev+1, b.ends[i]
		prev = end
		if k < len(idx) && idx[k] == i {
			k++
			continue
		}
		w += copy(b.buf[w:], b.buf[start:end+1])
		b.ends[kept] = w - 1
		if b.meta != nil {
			b.meta[kept] = b.meta[i]
		}
		pos[kept] = pos[i]
		kept++
	}
	b.buf, b.ends, b.pos = b.buf[:w], b.ends[:kept], pos[:kept]
	if b.meta != nil {
		clear(b.meta[kept:])
		b.meta = b.meta[:kept]
	}
	if kept > 0 {
		b.First = pos[0]
	}
	if s, ok := b.Span(); ok && b.ID != "" {
		b.ID = s.ID() // its identity is the records it holds
	}
}

// A Span is where the records of a batch that holds one Kafka partition's
// records came from: its identity for --exactly-once.
type Span struct {
	Topic       string
	Partition   int32
	First, Last int64 // offsets of its first and last records
}

// ID is TOPIC-PARTITION-FIRST-LAST.
func (s Span) ID() string {
	return s.Topic + "-" + strconv.FormatInt(int64(s.Partition), 10) + "-" +
		strconv.FormatInt(s.First, 10) + "-" + strconv.FormatInt(s.Last, 10)
}

// Span returns the partition and offsets of b's records, if they all have
// metadata and come from one partition.
func (b *Batch) Span() (Span, bool) {
	n := b.Len()
	if n == 0 || b.meta == nil || b.meta[0] == nil {
		return Span{}, false
	}
	m := b.meta[0]
	for _, o := range b.meta[1:n] {
		if o == nil || o.Partition != m.Partition || o.Topic != m.Topic {
			return Span{}, false
		}
	}
	return Span{Topic: m.Topic, Partition: m.Partition, First: m.Offset, Last: b.meta[n-1].Offset}, true
}

// String describes the batch for logs and errors.
func (b *Batch) String() string {
	n := b.Len()
	if n == 0 {
		return fmt.Sprintf("batch %d (empty)", b.Seq)
	}
	last := b.First.Record + int64(n) - 1
	if m := b.Meta(0); m != nil {
		lm := b.Meta(n - 1)
		if n == 1 {
			return fmt.Sprintf("batch %d (%s[%d] offset %d)", b.Seq, m.Topic, m.Partition, m.Offset)
		}
		return fmt.Sprintf("batch %d (%d records, %s[%d] offset %d … %s[%d] offset %d)",
			b.Seq, n, m.Topic, m.Partition, m.Offset, lm.Topic, lm.Partition, lm.Offset)
	}
	if n == 1 {
		return fmt.Sprintf("batch %d (%s)", b.Seq, b.First)
	}
	if b.pos != nil && b.pos[n-1].Record-b.pos[0].Record != int64(n-1) {
		// Not consecutive: name them, or the first few.
		var names []string
		for _, p := range b.pos[:min(n, 5)] {
			names = append(names, strconv.FormatInt(p.Record, 10))
		}
		if n > 5 {
			names = append(names, fmt.Sprintf("… %d", b.pos[n-1].Record))
		}
		return fmt.Sprintf("batch %d (%d records: %s)", b.Seq, n, strings.Join(names, ", "))
	}
	return fmt.Sprintf("batch %d (records %d-%d, byte offset %d)", b.Seq, b.First.Record, last, b.First.Offset)
}

// reset empties b for reuse, keeping its buffers.
func (b *Batch) reset() {
	clear(b.meta) // let the metadata go; keep the slice for the next batch
	*b = Batch{buf: b.buf[:0], ends: b.ends[:0], meta: b.meta[:0:cap(b.meta)], Delim: b.Delim}
	if cap(b.meta) == 0 {
		b.meta = nil
	}
}

// add appends one record.
func (b *Batch) add(r *Record) {
	if r.Meta != nil && b.meta == nil {
		b.meta = make([]*Meta, len(b.ends), cap(b.ends))
	}
	b.buf = slices.Grow(b.buf, len(r.Data)+1) // one allocation for a huge record
	b.buf = append(b.buf, r.Data...)
	b.buf = append(b.buf, b.Delim)
	b.ends = append(b.ends, len(b.buf)-1)
	if b.meta != nil {
		b.meta = append(b.meta, r.Meta)
	}
}
