package batcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// keyWatch is a sink's view of keyed deliveries: how many of a key's
// batches were being delivered at once, and of all keys.
type keyWatch struct {
	mu       sync.Mutex
	byKey    map[string]int
	all      int
	mostKey  int
	mostAll  int
	attempts []string // "SEQ/ATTEMPT" in the order attempts started
}

func (w *keyWatch) begin(b *Batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byKey == nil {
		w.byKey = map[string]int{}
	}
	w.byKey[b.Key]++
	w.all++
	w.mostKey = max(w.mostKey, w.byKey[b.Key])
	w.mostAll = max(w.mostAll, w.all)
	w.attempts = append(w.attempts, fmt.Sprintf("%d/%d", b.Seq, b.Attempt))
}

func (w *keyWatch) end(b *Batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.byKey[b.Key]--
	w.all--
}

// A key's batches are delivered one after another, each retried until it
// goes before the next starts, while keys go in parallel; the sink takes a
// random while and fails a third of the attempts.
func TestKeyTurnsDeliverAKeyInOrder(t *testing.T) {
	for _, parallel := range []int{2, 4, 16} {
		t.Run(fmt.Sprint("j", parallel), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := interleaved(3, 600)
				var w keyWatch
				sink := newSink()
				sink.deliver = func(ctx context.Context, b *Batch) error {
					w.begin(b)
					defer w.end(b)
					advance(time.Duration(rand.IntN(100)) * time.Millisecond)
					if rand.IntN(3) == 0 {
						return errors.New("not now")
					}
					return nil
				}
				p := &Pipeline{Source: &sliceSource{recs: recs(in...), n: 7}, Sink: sink,
					Config: cfg(Config{MaxRecords: 2, Key: prefixKey, MaxOpenKeys: 1, Parallel: parallel,
						Retries: 100, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})}
				st, err := p.Run(t.Context())
				if err != nil || st.Delivered != int64(len(in)) {
					t.Fatalf("delivered %d of %d: %v", st.Delivered, len(in), err)
				}
				// In the order delivered, not by batch number: each key's
				// records must have arrived in input order.
				got := sink.got()
				byKey := map[string][]string{}
				for _, b := range got {
					byKey[keyOf(b.records[0])] = append(byKey[keyOf(b.records[0])], b.records...)
				}
				for _, r := range in {
					k := keyOf(r)
					if len(byKey[k]) == 0 || byKey[k][0] != r {
						t.Fatalf("key %s: %s is not next, %q are", k, r, byKey[k][:min(3, len(byKey[k]))])
					}
					byKey[k] = byKey[k][1:]
				}
				if w.mostKey != 1 {
					t.Errorf("%d batches of a key delivered at once", w.mostKey)
				}
				if w.mostAll < 2 {
					t.Errorf("at most %d batches delivered at once: keys did not go in parallel", w.mostAll)
				}
			})
		})
	}
}

// A batch being retried is not overtaken by the next batch of its key;
// another key's batch goes meanwhile.
func TestKeyTurnsRetryIsNotOvertaken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w keyWatch
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			w.begin(b)
			defer w.end(b)
			if b.Seq == 1 && b.Attempt < 3 {
				return RetryAfter(errors.New("not yet"), time.Second)
			}
			return nil
		}
		p := &Pipeline{Source: &sliceSource{recs: recs("a:1", "a:2", "b:3"), n: 3}, Sink: sink,
			Config: cfg(Config{MaxRecords: 1, Key: prefixKey, Parallel: 4,
				Retries: 5, Backoff: time.Second, MaxBackoff: time.Second})}
		if _, err := p.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Batch 3 (key b) goes while batch 1 waits to be tried again;
		// batch 2 only once batch 1 went.
		retried, second, other := slices.Index(w.attempts, "1/2"), slices.Index(w.attempts, "2/1"), slices.Index(w.attempts, "3/1")
		if other < 0 || other > retried || second < slices.Index(w.attempts, "1/3") {
			t.Fatalf("attempts (batch/attempt) in the order %q", w.attempts)
		}
	})
}

// A key whose first batch hangs does not stop other keys' batches at
// once: batches of the key behind it are set aside, and the workers hold
// no more batches than -j, so reading stops within the usual bound. Once
// the batch goes, the key's others follow in order.
func TestKeyTurnsHungKeyIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const parallel = 4
		release := make(chan struct{})
		var w keyWatch
		sink := newSink()
		sink.deliver = func(ctx context.Context, b *Batch) error {
			w.begin(b)
			defer w.end(b)
			if b.Seq == 1 {
				<-release
			}
			return nil
		}
		src := &chanSource{in: make(chan []Record)}
		p := &Pipeline{Source: src, Sink: sink,
			Config: cfg(Config{MaxRecords: 1, Key: prefixKey, Parallel: parallel, MaxBytes: 64})}
		done := runAsync(t, p)
		var in []string
		for i := 0; i < 1000; i++ { // (without a bound, for ever)
			r := fmt.Sprintf("a:%d", i)
			if i%2 == 1 {
				r = fmt.Sprintf("b:%d", i)
			}
			select {
			case src.in <- recs(r):
				in = append(in, r)
				continue
			case <-time.After(time.Minute):
			}
			break
		}
		synctest.Wait()
		var bs int
		for _, b := range sink.got() {
			if keyOf(b.records[0]) != "b" {
				t.Fatalf("batch %d of key a delivered while batch 1 hangs", b.seq)
			}
			bs++
		}
		// Three batches of a set aside, with the hung one all workers
		// hold; the b batches between them went.
		if bs != parallel-1 {
			t.Errorf("%d batches of b delivered while a hangs, want %d", bs, parallel-1)
		}
		// Read: the workers' batches, one queued and those that wait,
		// (Parallel+1) x MaxBytes of 4-byte records with their delimiters.
		if most := 2*parallel + 1 + (parallel+1)*64/5 + 1; len(in) > most {
			t.Errorf("read %d records with a key hung: more than %d", len(in), most)
		}
		close(release)
		close(src.in)
		st := <-done
		if st.Delivered != int64(len(in)) {
			t.Fatalf("delivered %d of %d", st.Delivered, len(in))
		}
		checkKeyed(t, sink.got(), in)
		if w.mostKey != 1 {
			t.Errorf("%d batches of a key delivered at once", w.mostKey)
		}
	})
}

// A batch set aside and then delivered by the worker of its key gives back
// one reservation, not two or none: otherwise every such hand-over would
// leave the workers one batch fewer to take.
func TestKeyTurnsHandOverKeepsTheCount(t *testing.T) {
	turns, stop := newKeyTurns(context.Background(), 4)
	defer stop()
	queue := make(chan *Batch, 3)
	queue <- &Batch{Seq: 1, Key: "a"}
	queue <- &Batch{Seq: 2, Key: "a"}
	queue <- &Batch{Seq: 3, Key: "b"}
	close(queue)
	if b := turns.take(queue); b.Seq != 1 {
		t.Fatalf("took batch %d first, want 1", b.Seq)
	}
	if b := turns.take(queue); b.Seq != 3 { // 2 is set aside behind 1
		t.Fatalf("took batch %d second, want 3", b.Seq)
	}
	if b := turns.next("b"); b != nil {
		t.Fatalf("b has batch %d set aside, want none", b.Seq)
	}
	if b := turns.next("a"); b == nil || b.Seq != 2 {
		t.Fatalf("a's next batch is %v, want 2", b)
	}
	if b := turns.next("a"); b != nil {
		t.Fatalf("a has batch %d set aside, want none", b.Seq)
	}
	if turns.take(queue) != nil {
		t.Fatal("took a batch from a drained queue")
	}
	if turns.held != 0 {
		t.Errorf("%d reservations held with every batch settled, want 0", turns.held)
	}
}
