package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/batchpipe/batchpipe/batcher"
)

// File appends every batch to one file, or to a writer such as stdout, in
// the order the batches were formed, whatever -j: a batch waits for its
// turn, once every batch before it is settled.
type File struct {
	path  string
	f     *os.File  // nil when writing to w
	w     io.Writer // stdout
	fsync bool
	body  Format
	order *batchOrder

	mu  sync.Mutex // one batch at a time, so batches never interleave
	buf []byte     // body of the batch being written, for formats that build one

	// compress makes each batch one gzip member or zstd frame: the file
	// stays one valid stream, for zcat and zstdcat.
	compress Compression
	zbuf     []byte
}

// FileOptions are the file sink's settings; the zero value appends records
// as they were read, without fsync, and refuses a symbolic link.
type FileOptions struct {
	Fsync          bool   // fsync after each batch, before it counts as delivered
	Format         Format // body format; default Lines
	FollowSymlinks bool   // write through a symbolic link at the path

	Compress Compression // gzip or zstd, a member or frame per batch
}

var (
	_ batcher.Sink    = (*File)(nil)
	_ batcher.Closer  = (*File)(nil)
	_ batcher.Settler = (*File)(nil)
)

// OpenFile opens path for appending, creating it with mode 0644. Errors
// here are found before any input is read. A symbolic link is refused
// unless opt.FollowSymlinks: appending through a link planted at a
// predictable path writes wherever it points.
func OpenFile(path string, opt FileOptions) (*File, error) {
	flags := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	if !opt.FollowSymlinks {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("file sink: %s is a symbolic link (give --follow-symlinks to write through it)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	return &File{path: path, f: f, fsync: opt.Fsync, body: opt.Format, compress: opt.Compress, order: newBatchOrder(1)}, nil
}

// NewWriter returns a sink that writes batches to w (stdout), named name in
// errors.
func NewWriter(w io.Writer, name string, f Format) *File {
	return &File{path: name, w: w, body: f, order: newBatchOrder(1)}
}

// Compressed makes s compress each batch (see FileOptions.Compress).
func (s *File) Compressed(c Compression) *File {
	s.compress = c
	return s
}

// Deliver writes the batch with a single write, in its turn. If that fails
// part-way in a regular file, the file is cut back to where the batch
// began, so a retry does not leave half a batch behind it.
func (s *File) Deliver(ctx context.Context, b *batcher.Batch) error {
	if err := s.order.wait(ctx, b.Seq); err != nil {
		return fmt.Errorf("file sink: %s: waiting for the batches before it: %w", b, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	body, rej := s.body.Body(&s.buf, b)
	if s.compress.On() && len(body) > 0 {
		var err error
		if s.zbuf, err = s.compress.Append(s.zbuf[:0], body); err != nil {
			return batcher.Permanent(fmt.Errorf("file sink: %s: %w", s.path, err))
		}
		body = s.zbuf
	}
	if err := s.write(body); err != nil {
		return err
	}
	return rejected(rej)
}

// Settled lets the batch after seq write, once those before it have.
func (s *File) Settled(seq int64) { s.order.settle(seq) }

// rejected turns a format's rejected records into the sink's error.
func rejected(rej []batcher.Rejected) error {
	if len(rej) == 0 {
		return nil
	}
	return &batcher.RejectError{Records: rej}
}

func (s *File) write(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	if s.f == nil {
		if _, err := s.w.Write(body); err != nil {
			return brokenPipe(fmt.Errorf("file sink: write %s: %w", s.path, bare(err)))
		}
		return nil
	}
	if n, err := s.f.Write(body); err != nil {
		err = bare(err)
		// The batch began n bytes before the end: found after the failure,
		// so a write that succeeds costs no extra system call.
		if fi, serr := s.f.Stat(); n > 0 && serr == nil && fi.Mode().IsRegular() {
			start := fi.Size() - int64(n)
			if terr := s.f.Truncate(start); terr != nil {
				err = errors.Join(err, fmt.Errorf("cut back to %d bytes: %w", start, terr))
			}
		}
		return brokenPipe(fmt.Errorf("file sink: write %s: %w", s.path, err))
	}
	if s.fsync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("file sink: fsync %s: %w", s.path, bare(err))
		}
	}
	return nil
}

// brokenPipe marks a write to a pipe whose reader left as the end of the
// run: retrying cannot bring the reader back (cat stops at once too).
func brokenPipe(err error) error {
	if errors.Is(err, syscall.EPIPE) {
		return batcher.Fatal(err)
	}
	return err
}

// bare drops the operation and path an *os.File error repeats, for a
// message that names them already: not "write x: write x: no space".
func bare(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// Close closes the file.
func (s *File) Close() error {
	if s.f == nil {
		return nil
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("file sink: close %s: %w", s.path, err)
	}
	return nil
}

// PerBatch writes each batch to a file of its own, named from a template,
// so that a reader never sees a partial file and no file is overwritten.
type PerBatch struct {
	tmpl *Template
	src  string
	body Format
	now  func() time.Time
	// byOffsets: the template names batches by their offsets alone, which
	// needs batches of one partition each.
	byOffsets bool
	// dirLen is the length of the template's fixed directory: its text up
	// to the last '/' before the first placeholder; -1 if none.
	dirLen int
	// FollowSymlinks lets a symbolic link below the fixed directory (at
	// out/<key>, or at a file's name) take the batch where it points.
	FollowSymlinks bool
	// Encoder, when set, lays out each batch as a whole file (Parquet)
	// in place of the body format.
	Encoder BatchEncoder

	Compress Compression // gzip or zstd: each file compressed
}

// DeliveryMemory is what encoding a batch of maxBytes holds beyond the
// batch, if the encoder says.
func (s *PerBatch) DeliveryMemory(maxBytes int) int64 {
	if m, ok := s.Encoder.(interface{ Memory(int) int64 }); ok {
		return m.Memory(maxBytes)
	}
	return 0
}

// A BatchEncoder lays out a batch as one whole file, with the records it
// cannot take (by index, with the reason); nil when it took none. The
// same batch must give the same bytes, for a file found in place.
type BatchEncoder interface {
	Encode(b *batcher.Batch) ([]byte, []batcher.Rejected, error)
}

var _ batcher.Sink = (*PerBatch)(nil)

// NewPerBatch checks the template. It must name a file, and give each batch
// of a run a name of its own.
func NewPerBatch(tmpl string, f Format) (*PerBatch, error) {
	if tmpl == "" || strings.HasSuffix(tmpl, "/") {
		return nil, fmt.Errorf("per-batch template %q does not name a file", tmpl)
	}
	t, err := ParseTemplate(tmpl, true)
	if err != nil {
		return nil, fmt.Errorf("per-batch template %q: %w", tmpl, err)
	}
	if err := uniqueNames(tmpl); err != nil {
		return nil, err
	}
	fixed := tmpl
	if i := strings.IndexByte(fixed, '{'); i >= 0 {
		fixed = fixed[:i]
	}
	s := &PerBatch{tmpl: t, src: tmpl, body: f, now: time.Now, byOffsets: !t.Has("seq"), dirLen: strings.LastIndexByte(fixed, '/')}
	if _, rel := s.split(string(t.Render(nil, sampleValues, pathEscape))); slices.Contains(strings.Split(rel, "/"), "..") {
		return nil, fmt.Errorf("per-batch template %q: '..' after its first placeholder would leave the directory it names", tmpl)
	}
	return s, nil
}

// Name returns the file name for batch b. Values from the input (topic,
// key) are escaped to one path element each (see pathEscape): no value
// climbs out of the template's directory. A name component longer than
// maxName gets its short form (shortName).
func (s *PerBatch) Name(b *batcher.Batch) string {
	dir, rel := s.names(b)
	return path.Join(dir, rel)
}

// names returns the fixed directory of b's name and the rest below it.
func (s *PerBatch) names(b *batcher.Batch) (dir, rel string) {
	dir, rel = s.split(string(s.tmpl.Render(nil, BatchValues(b, s.now()), pathEscape)))
	if len(rel) > maxName {
		parts := strings.Split(rel, "/")
		for i, p := range parts {
			parts[i] = shortName(p)
		}
		rel = strings.Join(parts, "/")
	}
	return dir, rel
}

// split cuts a rendered name after its fixed directory.
func (s *PerBatch) split(name string) (dir, rel string) {
	switch s.dirLen {
	case -1:
		return ".", name
	case 0:
		return "/", name[1:]
	}
	return name[:s.dirLen], name[s.dirLen+1:]
}

// Deliver writes b to a temporary file beside its final name, syncs it and
// links it into place, which fails rather than replace an existing file.
func (s *PerBatch) Deliver(ctx context.Context, b *batcher.Batch) error {
	var body []byte
	var rej []batcher.Rejected
	if s.Encoder != nil {
		var err error
		if body, rej, err = s.Encoder.Encode(b); err != nil {
			return batcher.Permanent(fmt.Errorf("file sink: batch %d: %w", b.Seq, err))
		}
	} else {
		var buf []byte
		body, rej = s.body.Body(&buf, b)
	}
	if len(body) == 0 {
		return rejected(rej) // every record rejected: no file
	}
	if _, ok := b.Span(); s.byOffsets && !ok {
		return batcher.Permanent(fmt.Errorf("file sink: per-batch template %q names batches by their offsets, and batch %d holds records of several partitions, or none from Kafka: add {seq}, or use --exactly-once", s.src, b.Seq))
	}
	if s.Compress.On() {
		var err error
		if body, err = s.Compress.Append(nil, body); err != nil {
			return batcher.Permanent(fmt.Errorf("file sink: batch %d: %w", b.Seq, err))
		}
	}
	dir, rel := s.names(b)
	if err := s.write(dir, rel, body); err != nil {
		return fmt.Errorf("file sink: %s: %w", path.Join(dir, rel), err)
	}
	return rejected(rej)
}

// write writes data to the new file rel below dir, resolved beneath dir
// without following a symbolic link unless FollowSymlinks. dir itself is
// the user's, and may be or hold a link.
func (s *PerBatch) write(dir, rel string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return batcher.Permanent(err)
	}
	root, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	d, err := openBeneath(root, path.Dir(rel), s.FollowSymlinks)
	if err != nil {
		if errors.Is(err, errSymlink) || errors.Is(err, syscall.ENOTDIR) {
			return batcher.Permanent(err)
		}
		return err
	}
	defer d.Close()
	return writeAt(d, path.Base(rel), data, s.FollowSymlinks)
}

var (
	_ batcher.DeadLetter       = (*File)(nil)
	_ batcher.RecordDeadLetter = (*File)(nil)
)

// WriteRecord appends one record read from r, and delim, as a dead letter:
// a record too large to hold in memory, copied from where the source kept
// it. A failure part-way cuts a regular file back, so that the file stays
// valid input for a replay.
func (s *File) WriteRecord(ctx context.Context, r io.Reader, delim byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if _, err := io.Copy(s.w, r); err != nil {
			return fmt.Errorf("file sink: write %s: %w", s.path, err)
		}
		_, err := s.w.Write([]byte{delim})
		return err
	}
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("file sink: %s: %w", s.path, err)
	}
	_, err = io.Copy(s.f, r)
	if err == nil {
		_, err = s.f.Write([]byte{delim})
	}
	if err == nil && s.fsync {
		err = s.f.Sync()
	}
	if err != nil {
		if fi.Mode().IsRegular() {
			if terr := s.f.Truncate(fi.Size()); terr != nil {
				err = errors.Join(err, fmt.Errorf("cut back to %d bytes: %w", fi.Size(), terr))
			}
		}
		return fmt.Errorf("file sink: write %s: %w", s.path, err)
	}
	return nil
}

// Write appends b as a dead letter: its records exactly as read, so the file
// is valid input for a replay run. The reason is logged by the caller.
func (s *File) Write(ctx context.Context, b *batcher.Batch, reason error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(b.Bytes())
}
