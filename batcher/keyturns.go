package batcher

import (
	"context"
	"sync"
)

// keyTurns delivers each key's batches one after another when several
// workers deliver keyed batches: a batch starts only once the batch of its
// key before it is settled, retries included, while other keys' batches go
// on beside it.
//
// Workers take batches from the queue in the order they were formed. One
// whose key is being delivered is set aside, and the worker delivering
// that key takes it next, so it never waits for a free worker. The workers
// hold at most Parallel batches, being delivered or set aside (as many as
// they would without keys): a worker takes another from the queue only
// below that. So a key whose batches pile up behind a slow delivery stops
// the queue, and then reading, rather than grow memory, until its batches
// go; the queue does not stop while others are free to go.
//
// As batches leave the queue in order, the oldest batch not settled is
// always being delivered: a sink that writes in batch order (the file
// sink, exec --keep-order, Kafka) never waits on a batch set aside.
type keyTurns struct {
	// taking is held by the worker taking a batch from the queue until
	// the batch is started or set aside, so that batches are in the order
	// they left the queue.
	taking sync.Mutex

	mu   sync.Mutex
	room sync.Cond // signalled when held drops below max
	max  int       // Parallel
	held int       // batches being delivered or set aside, and workers about to take one
	// abandoned lifts the bound once deliveries are abandoned: the batches
	// left are settled at once, and a delivery that hangs must not keep
	// the other workers waiting for room.
	abandoned bool
	// keys maps a key being delivered to its batches set aside, in order.
	keys map[string][]*Batch
}

// newKeyTurns returns turns for parallel workers, whose deliveries ctx
// abandons; stop undoes the watch on ctx.
func newKeyTurns(ctx context.Context, parallel int) (t *keyTurns, stop func() bool) {
	t = &keyTurns{max: parallel, keys: make(map[string][]*Batch)}
	t.room.L = &t.mu
	return t, context.AfterFunc(ctx, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.abandoned = true
		t.room.Broadcast()
	})
}

// take waits until the workers may take another batch, and returns the
// next one from queue that may be delivered now, having set aside those
// that may not; nil once queue is closed.
func (t *keyTurns) take(queue <-chan *Batch) *Batch {
	for {
		t.reserve()
		t.taking.Lock()
		b, ok := <-queue
		if !ok {
			t.taking.Unlock()
			t.unreserve()
			return nil
		}
		now := t.start(b)
		t.taking.Unlock()
		if now {
			return b
		}
	}
}

// reserve waits until the workers may take another batch, and counts it.
func (t *keyTurns) reserve() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.held >= t.max && !t.abandoned {
		t.room.Wait()
	}
	t.held++
}

// unreserve gives back a reservation no batch came for.
func (t *keyTurns) unreserve() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held--
	t.room.Signal()
}

// start reports whether b, taken from the queue with a reservation, may be
// delivered now; if not, it is set aside, keeping the reservation.
func (t *keyTurns) start(b *Batch) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	waiting, busy := t.keys[b.Key]
	if busy {
		t.keys[b.Key] = append(waiting, b)
		return false
	}
	t.keys[b.Key] = nil
	return true
}

// next is called once the batch of key being delivered is settled: it
// gives the settled batch's reservation back and returns the key's next
// batch set aside, to be delivered now with its own, or nil.
func (t *keyTurns) next(key string) *Batch {
	t.mu.Lock()
	defer t.mu.Unlock()
	waiting := t.keys[key]
	if len(waiting) == 0 {
		delete(t.keys, key)
		t.held--
		t.room.Signal()
		return nil
	}
	b := waiting[0]
	waiting[0] = nil
	t.keys[key] = waiting[1:]
	// b came with a reservation of its own; the settled batch's goes.
	t.held--
	t.room.Signal()
	return b
}
