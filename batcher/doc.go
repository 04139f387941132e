// Package batcher groups records into batches and delivers them to a sink:
// one goroutine owns the open batch, a bounded queue feeds a fixed set of
// delivery workers, and every record read ends up delivered, dead-lettered
// or counted as undelivered. It uses the standard library only.
//
// Where each idea lives:
//   - batch.go: Record, Batch and their memory
//   - source.go: the Source interface and what a source may add (Acker,
//     Withdrawer, Locator)
//   - sink.go: the Sink interface, its extensions and delivery errors
//     (Permanent, Fatal, RetryAfter, RejectError)
//   - config.go: Config, its defaults and its one validation pass
//   - pipeline.go: Pipeline and Run, which ties reading, batching and
//     delivery together, and the shutdown of the workers
//   - aggregator.go: the open batch, cut by count, bytes, linger and key
//   - delivery.go: a worker's attempts, retries, dead letters and how each
//     batch settles (Settlement, Outcome)
//   - keyed.go, keytemplate.go, keyturns.go: batches per key
//     (--partition-by), their template and the order of a key's batches
//   - stats.go: the counters
package batcher
