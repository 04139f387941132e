// The pipeline's settings, their defaults and their one validation pass.

package batcher

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config holds the batching and delivery settings. The zero value of a
// field means its default, given beside it.
type Config struct {
	MaxRecords int           // flush at this many records; default 1000
	MaxBytes   int           // flush before a batch would pass this size; default 1 MiB
	Linger     time.Duration // flush once the oldest record waited this long; 0: never
	Delim      byte          // record delimiter; 0 is NUL, so set it

	// PerRecordOverhead is counted toward MaxBytes for every record on top
	// of its bytes, for sinks whose cost per record is more than its bytes
	// (command-line arguments).
	PerRecordOverhead int

	Parallel   int           // batches delivered at once; default 1
	Retries    int           // attempts after the first; 0: none
	Backoff    time.Duration // first retry waits up to this; 0: retries at once
	MaxBackoff time.Duration // no retry waits longer; 0: retries at once

	// ShutdownTimeout bounds the drain after Stop; then deliveries in
	// flight are abandoned. 0: no bound.
	ShutdownTimeout time.Duration

	// DeadLetter keeps batches that cannot be delivered. Without one, the
	// first such batch stops the run.
	DeadLetter DeadLetter

	// Logger gets a warning per retry and dead letter and, at debug level,
	// a line per batch. Default: silent.
	Logger *slog.Logger

	// OnSettled, if set, is called once per batch when its fate is known.
	OnSettled func(Settlement)

	// Key, if set, gives each record a key, appended to dst, and batches
	// records by key: each key has a batch open of its own, flushed by
	// MaxRecords, MaxBytes and Linger (from its own oldest record) alone.
	// A record whose key cannot be found (the error) is dead-lettered on
	// its own, or counted undelivered, never put in a batch of a guessed
	// key. Order within a key is kept: with Parallel above 1, a key's
	// batch is delivered only once the one before it is settled (see
	// keyTurns). Stream blocks are split into
	// records for it, which costs more than an unkeyed run.
	Key func(dst []byte, r *Record) ([]byte, error)
	// MaxOpenKeys bounds the batches open at once with Key: a record of a
	// new key past it flushes the batch with the oldest record first.
	// Default 1000.
	MaxOpenKeys int
	// MaxBufferedBytes bounds the bytes held in all open batches with Key:
	// past it, the largest batch is flushed. Default 64 MiB.
	MaxBufferedBytes int

	// Plan, if set with Key, is called with every batch that Key formed,
	// before it is queued, so that the source can store its cut (exactly
	// once). Batches of records whose Meta.PlanEnd says they were planned
	// before are not passed again. An error wrapping ErrNotOwned gives the
	// records back (Stats.Withdrawn); another fails the batch.
	Plan func(b *Batch) error
}

// Validate reports settings that make no sense.
func (c *Config) Validate() error {
	switch {
	case c.MaxRecords < 0:
		return fmt.Errorf("max records must be at least 1, not %d", c.MaxRecords)
	case c.MaxBytes < 0:
		return fmt.Errorf("max bytes must be positive, not %d", c.MaxBytes)
	case c.Linger < 0:
		return fmt.Errorf("linger must not be negative, not %v", c.Linger)
	case c.Parallel < 0:
		return fmt.Errorf("parallel must be at least 1, not %d", c.Parallel)
	case c.Retries < 0:
		return fmt.Errorf("retries must not be negative, not %d", c.Retries)
	case c.Backoff < 0 || c.MaxBackoff < 0:
		return errors.New("backoff must not be negative")
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown timeout must not be negative, not %v", c.ShutdownTimeout)
	case c.MaxOpenKeys < 0:
		return fmt.Errorf("max open keys must be at least 1, not %d", c.MaxOpenKeys)
	case c.MaxBufferedBytes < 0:
		return fmt.Errorf("max buffered bytes must be positive, not %d", c.MaxBufferedBytes)
	case c.Plan != nil && c.Key == nil:
		return errors.New("a plan hook needs a key")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxRecords == 0 {
		c.MaxRecords = 1000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 20
	}
	if c.Parallel == 0 {
		c.Parallel = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxOpenKeys == 0 {
		c.MaxOpenKeys = DefaultMaxOpenKeys
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	return c
}
