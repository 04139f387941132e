package batcher

import (
	"sync/atomic"
	"time"
)

// Stats counts what a run did. Read = Delivered + DeadLettered + Undelivered
// + Withdrawn once the run is over.
type Stats struct {
	Read         int64 // records received from the source
	BytesRead    int64 // their bytes, delimiters included
	Delivered    int64 // records delivered
	DeadLettered int64 // records written to the dead letter
	Undelivered  int64 // records neither delivered nor dead-lettered
	// Withdrawn counts records read but given back to the source unsent,
	// for it to read again, and not committed: their Kafka partition went
	// to another member (see Withdrawer), or a stop came in the middle of
	// a batch cut before (exactly once).
	Withdrawn int64
	InFlight  int64 // records flushed and not yet settled

	Batches        int64 // batches flushed
	BatchesDone    int64 // batches delivered in full
	BatchesPartly  int64 // batches of which some records were delivered, not all
	BytesDelivered int64
	Retries        int64 // delivery attempts after the first
	Reformed       int64 // batches cut again where an earlier run planned them

	Reasons map[string]int64 // batches flushed, by reason
	Elapsed time.Duration
}

// counters are the live, concurrently updated form of Stats.
type counters struct {
	start          atomic.Pointer[time.Time] // set by Run; Stats may be called before
	read           atomic.Int64
	bytesRead      atomic.Int64
	delivered      atomic.Int64
	deadLettered   atomic.Int64
	undelivered    atomic.Int64
	withdrawn      atomic.Int64
	inFlight       atomic.Int64
	batches        atomic.Int64
	batchesDone    atomic.Int64
	batchesPartly  atomic.Int64
	bytesDelivered atomic.Int64
	retries        atomic.Int64
	reasons        [numReasons]atomic.Int64
	reformed       atomic.Int64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Read:           c.read.Load(),
		BytesRead:      c.bytesRead.Load(),
		Delivered:      c.delivered.Load(),
		DeadLettered:   c.deadLettered.Load(),
		Undelivered:    c.undelivered.Load(),
		Withdrawn:      c.withdrawn.Load(),
		InFlight:       c.inFlight.Load(),
		Reformed:       c.reformed.Load(),
		Batches:        c.batches.Load(),
		BatchesDone:    c.batchesDone.Load(),
		BatchesPartly:  c.batchesPartly.Load(),
		BytesDelivered: c.bytesDelivered.Load(),
		Retries:        c.retries.Load(),
		Reasons:        make(map[string]int64),
	}
	if start := c.start.Load(); start != nil {
		s.Elapsed = time.Since(*start)
	}
	for r := range numReasons {
		if n := c.reasons[r].Load(); n > 0 {
			s.Reasons[r.String()] = n
		}
	}
	return s
}
