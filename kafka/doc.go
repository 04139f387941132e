// Package kafka is everything batchpipe does with Kafka: the client
// connection, the source (--topic), the sink (the kafka command), the
// dead letter (--dead-letter kafka:TOPIC), exactly once between them, and
// the envelope (--envelope json, kafka --unwrap). It is the only package
// that imports sarama; the command line opens what it needs through
// Open and OpenProducer and reads their errors' Kind.
//
// Where each idea lives:
//   - session.go: Open, one client for the source and the dead letter;
//     Wire, what the pipeline needs for exactly once; Finish, the final
//     commit; the summary line
//   - errors.go: Error and its Kind (unavailable, refused), which the
//     command line maps to exit statuses
//   - conn.go, conn_producer.go: Conn, the one place clients are built
//     (brokers, TLS, SASL, the group's settings, the producers' settings)
//   - source.go: Source, its config, OpenSource, Run, acks, lag, Close
//   - offsets.go: where reading starts and stops: --from, --until, end
//     offsets, high watermarks
//   - read.go: the read loop, a reader per partition; what a partition's
//     end holds that no reader gets (markers, aborted records); the watch
//     that fails the run when no broker answers
//   - group.go: the consumer group: sessions, the handler of each
//     (assign, revoke), cooperative claims, the group's state
//   - commit.go: committing the group's offsets of what was delivered
//   - drain.go: --until-end with a group, judged for the whole group
//   - track.go: the commit tracker: which records are done with, so that
//     no commit passes one that is not
//   - cuts.go: exactly once to other sinks: each batch's cut stored in
//     the group's offset metadata before it is delivered
//   - producer.go: Producer, the kafka sink; inflight.go, its record
//     batches in flight, in order per partition; partition.go, the
//     partitioners (murmur2, crc32, random)
//   - txn.go: exactly once to Kafka: one transaction per batch, holding
//     its records and the source offset it completes; turns.go, the
//     order those transactions commit in
//   - deadletter.go: DeadLetter, records not delivered, to a topic
//   - envelope.go, envelope_parse.go: the envelope, written by the source
//     and read back by the sink
//
// Exactly once. With --exactly-once every batch holds records of one
// source partition (Wire sets batcher.PartitionKey) and is planned before
// it is delivered (Wire sets the pipeline's Plan):
//   - to any other sink, the Source plans it: it stores where the batch
//     ends in the group's offset metadata (cuts.go), so a run after a
//     crash forms the same batches again, and the sink finds them in place;
//   - to Kafka (TxnSink), the Producer plans it: each batch is a
//     transaction that commits the source offset it completes (txn.go),
//     so the source commits none of its own; the transactions of a
//     partition commit in the order formed (turns.go, fed by the
//     pipeline's settled hook), and a producer fences other producers of
//     the partition only while the Source still owns it.
//
// Tests find their brokers through kafka/kafkatest: kfake, or the real
// broker BATCHPIPE_TEST_KAFKA names.
package kafka
