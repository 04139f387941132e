// What a source is to the pipeline: the Source interface and what a
// source may add to it (locating errors, acks, withdrawing records).

package batcher

import "context"

// A Source reads records and sends them on out in chunks, so the cost of a
// channel send is paid per read rather than per record.
//
// Run returns nil when input ends, ctx.Err() when ctx is cancelled, and any
// other error when reading fails. It must not close out. The receiver takes
// every chunk until Run returns, so when ctx is cancelled a source can still
// send what it had read: a source that cannot read the same input again
// (stdin) must, lest records go missing unsaid.
//
// out is unbuffered and its receiver copies what it needs from a chunk
// before it accepts the next one, so once a send has completed the source
// may reuse the memory of every chunk sent before it.
type Source interface {
	Run(ctx context.Context, out chan<- []Record) error
}

// A Locator is a Source whose read errors say where they happened
// themselves, as Kafka's name the partition. The pipeline adds the stream
// position (byte offset and record) only to other sources' errors: for
// them it is the one place the input is known.
type Locator interface {
	LocatesErrors() bool
}

// An Acker is a Source that wants to know when records are done with:
// delivered or dead-lettered. Ack may be called from several goroutines and
// in any order; records never acked were not delivered.
type Acker interface {
	Ack(b *Batch)
}

// A Withdrawer is a Source that may take back records it sent before they
// are delivered: a Kafka consumer's records of partitions a rebalance gave
// to another member, which reads them again.
type Withdrawer interface {
	// Withdraw is called before each attempt at a batch, and before it
	// goes to the dead letter. It returns the indexes, in increasing order,
	// of the records not to deliver: they are taken out of the batch and
	// count as withdrawn, neither delivered nor undelivered. A batch with
	// nothing left settles as Withdrawn without an attempt.
	Withdraw(b *Batch) []int
	// Settled is called once for every batch Seq, once no further attempt
	// will be made at it, after Ack.
	Settled(seq int64)
}
