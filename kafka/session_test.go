package kafka

import (
	"testing"

	"github.com/batchpipe/batchpipe/batcher"
	"github.com/batchpipe/batchpipe/internal/batchtest"
)

// Wire pairs the source with the sink for exactly once: batches of one
// partition, planned by the source (its cuts) or, to Kafka, by the
// transactional sink, which learns each batch's fate before the hook
// already set and asks the source before it fences.
func TestSessionWire(t *testing.T) {
	src := &Source{cfg: SourceConfig{Group: "g", ExactlyOnce: true}, track: newTracker()}

	var cfg batcher.Config
	if err := (&Session{src: src}).Wire(&cfg, batchtest.SinkFunc(nil)); err != nil {
		t.Fatal(err)
	}
	if cfg.Key == nil || cfg.Plan == nil || cfg.OnSettled != nil {
		t.Fatalf("exactly once by cuts: key %v, plan %v, settled hook %v; want a key and a plan",
			cfg.Key != nil, cfg.Plan != nil, cfg.OnSettled != nil)
	}

	txn := &Session{src: src, txnSink: true}
	if err := txn.Wire(&batcher.Config{}, batchtest.SinkFunc(nil)); err == nil {
		t.Fatal("a transactional session wired to another sink")
	}
	p := &Producer{txn: &txnSink{turns: newTurns(), parts: make(map[string]*txnPartition)}}
	var observed []string
	cfg = batcher.Config{OnSettled: func(s batcher.Settlement) { observed = append(observed, s.Batch.ID) }}
	if err := txn.Wire(&cfg, p); err != nil {
		t.Fatal(err)
	}
	if cfg.Key == nil || cfg.Plan == nil || p.txn.owns == nil {
		t.Fatalf("exactly once to Kafka: key %v, plan %v, owner %v; want all", cfg.Key != nil, cfg.Plan != nil, p.txn.owns != nil)
	}
	b := batchtest.OfRecords(t, '\n', batchtest.Source{{Data: []byte("r"),
		Meta: &batcher.Meta{Topic: "src", Partition: 0, Offset: 7}}})
	if err := cfg.Plan(b); err != nil {
		t.Fatal(err)
	}
	cfg.OnSettled(batcher.Settlement{Batch: b, Outcome: batcher.Delivered})
	if len(observed) != 1 || observed[0] != b.ID {
		t.Fatalf("the hook set before saw %q, want %q", observed, b.ID)
	}
	if q := p.txn.turns.queue[partKey("src", 0)]; len(q) != 0 {
		t.Fatalf("the sink did not learn the batch settled: %q still queued", q)
	}
	if p.txn.owns(b) {
		t.Fatal("the source owns a partition it never read")
	}
}
