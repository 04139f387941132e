package cmd

import (
	"io"
	"log/slog"

	"github.com/batchpipe/batchpipe/batcher"
)

// maxParallel bounds -j: more workers than this buys nothing but memory.
const maxParallel = 1024

// config checks the shared flags and turns them into a pipeline config.
func (o *options) config() (batcher.Config, error) {
	var cfg batcher.Config
	switch {
	case o.maxRecords < 1:
		return cfg, usagef("--max-records must be at least 1, not %d", o.maxRecords)
	case o.maxBytes < 1:
		return cfg, usagef("--max-bytes must be at least 1 byte")
	case o.maxRecordBytes < 1:
		return cfg, usagef("--max-record-bytes must be at least 1 byte")
	case o.linger < 0:
		return cfg, usagef("--linger must not be negative, not %v", o.linger)
	case o.parallel < 1 || o.parallel > maxParallel:
		return cfg, usagef("--parallel must be between 1 and %d, not %d", maxParallel, o.parallel)
	case o.retries < 0:
		return cfg, usagef("--retries must not be negative, not %d", o.retries)
	case o.backoff < 0 || o.maxBackoff < 0:
		return cfg, usagef("--backoff and --max-backoff must not be negative")
	case o.backoff > o.maxBackoff:
		return cfg, usagef("--backoff %v is longer than --max-backoff %v: no retry would wait as long as the first is meant to", o.backoff, o.maxBackoff)
	case o.shutdownTimeout < 0:
		return cfg, usagef("--shutdown-timeout must not be negative, not %v", o.shutdownTimeout)
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return cfg, usagef("--progress takes auto, always or never, not %q", o.progress)
	}
	switch o.logFormat {
	case "text", "json":
	default:
		return cfg, usagef("--log-format takes text or json, not %q", o.logFormat)
	}
	delim, err := o.delim()
	if err != nil {
		return cfg, err
	}
	key, err := o.keyFunc()
	if err != nil {
		return cfg, err
	}
	cfg = batcher.Config{
		MaxRecords:      o.maxRecords,
		MaxBytes:        int(o.maxBytes),
		Linger:          o.linger,
		Delim:           delim,
		Parallel:        o.parallel,
		Retries:         o.retries,
		Backoff:         o.backoff,
		MaxBackoff:      o.maxBackoff,
		ShutdownTimeout: o.shutdownTimeout,
	}
	if key != nil {
		cfg.Key, cfg.MaxOpenKeys, cfg.MaxBufferedBytes = key, o.maxOpenKeys, int(o.maxBufferedBytes)
	}
	return cfg, nil
}

// keyFunc checks --partition-by and its bounds and returns the key
// function, or nil without it.
func (o *options) keyFunc() (func([]byte, *batcher.Record) ([]byte, error), error) {
	changed := func(name string) bool {
		f := o.flags.Lookup(name)
		return f != nil && f.Changed
	}
	if o.partitionBy == "" {
		for _, name := range []string{"field-delimiter", "max-open-keys", "max-buffered-bytes"} {
			if changed(name) {
				return nil, usagef("--%s is for --partition-by: give it too", name)
			}
		}
		return nil, nil
	}
	switch {
	case o.kafka.exactlyOnce:
		return nil, usagef("--partition-by and --exactly-once: exactly once batches by partition, and key batches would not be formed again the same way after a crash; give one")
	case o.maxOpenKeys < 1:
		return nil, usagef("--max-open-keys must be at least 1, not %d", o.maxOpenKeys)
	case o.maxBufferedBytes < 1:
		return nil, usagef("--max-buffered-bytes must be at least 1 byte")
	}
	fd := o.fieldDelimiter
	switch fd {
	case "", `\t`:
		fd = "\t"
	case `\0`:
		fd = "\x00"
	}
	if len(fd) != 1 {
		return nil, usagef("--field-delimiter takes a single byte (or \\t), not %q", o.fieldDelimiter)
	}
	kt, err := batcher.ParseKeyTemplate(o.partitionBy, fd[0])
	if err != nil {
		return nil, usagef("--partition-by: %v", err)
	}
	if kt.NeedsKafka() && !o.kafka.enabled() {
		return nil, usagef("--partition-by: {kafka_key}, {topic} and {partition} read Kafka: give --topic too")
	}
	return kt.Key, nil
}

// logger writes warnings, and with -v a line per batch, to w.
func (o *options) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelWarn}
	if o.verbose {
		opts.Level = slog.LevelDebug
	}
	if o.logFormat == "json" {
		opts.ReplaceAttr = durationUnits
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func (o *options) delim() (byte, error) {
	if o.null && o.delimiter != "" {
		return 0, usagef("-0 and -d both set the delimiter: give one")
	}
	if o.null {
		return 0, nil
	}
	if f := o.flags.Lookup("delimiter"); f != nil && f.Changed && o.delimiter == "" {
		return 0, usagef("-d takes a single byte (or \\n, \\t, \\r, \\0), not an empty string")
	}
	switch o.delimiter {
	case "", `\n`:
		return '\n', nil
	case `\t`:
		return '\t', nil
	case `\0`:
		return 0, nil
	case `\r`:
		return '\r', nil
	}
	if len(o.delimiter) != 1 {
		return 0, usagef("-d takes a single byte (or \\n, \\t, \\r, \\0), not %q", o.delimiter)
	}
	return o.delimiter[0], nil
}

// A limitedSink cannot take batches of any size (a command line): its
// limits tighten --max-bytes and count a cost per record toward it.
type limitedSink interface {
	BatchLimits() (maxBytes, perRecordOverhead int)
}

// withSinkLimits tightens cfg to the batches sink can take.
func withSinkLimits(cfg batcher.Config, sink batcher.Sink) batcher.Config {
	if l, ok := sink.(limitedSink); ok {
		if maxBytes, overhead := l.BatchLimits(); maxBytes > 0 {
			cfg.MaxBytes = min(cfg.MaxBytes, maxBytes)
			cfg.PerRecordOverhead = overhead
		}
	}
	return cfg
}

// memoryLimit is the soft limit given to the garbage collector, so that
// runs of any length stay within the bound the README states: 15 MiB +
// 2 × (-j + 2) × --max-bytes (+ 4 × the largest record). What is read and
// not delivered is at most (-j + 2) batches, plus three read buffers; left
// to GOGC alone, the heap may grow to twice what is live, plus whatever
// garbage long runs leave, and did pass the bound. About 7 MiB of the 15 are
// the binary and memory the runtime does not count. A record larger than
// --max-bytes may take the heap past the limit while it is held: the
// collector then works harder (at most half the CPU), nothing fails.
//
// With --partition-by the open batches and those flushed and waiting for
// a worker hold up to --max-buffered-bytes more, in buffers within the
// bound the README states for it: 5 × --max-buffered-bytes + 4 × (-j + 2)
// × --max-bytes. Held to the bound without a key, the collector ran
// dozens of times a second and took more time than the batching.
func memoryLimit(cfg batcher.Config) int64 {
	if cfg.Key != nil {
		return 8<<20 + 5*int64(cfg.MaxBufferedBytes) + 4*int64(cfg.Parallel+2)*int64(cfg.MaxBytes)
	}
	return 8<<20 + 2*int64(cfg.Parallel+2)*int64(cfg.MaxBytes)
}
