package sinks

import (
	"context"
	"sync"
)

// batchOrder keeps what a sink writes to one stream in batch order
// (Batch.Seq), whatever -j: the file sink appends a batch in its turn, and
// exec --keep-order writes a run's output once its batch is. A delivery
// waits while its batch is window or more ahead of the oldest batch not
// yet settled: with a window of 1 it waits for its turn, and writes then;
// with a wider one it goes ahead, and holds what it writes until its
// batch's turn, so that at most window batches' writes are ever held.
//
// Settled moves it on, once for every batch. The pipeline hands batches
// out in the order they were formed, and the oldest one not settled is
// always being delivered, so a turn always comes.
type batchOrder struct {
	window int64

	mu      sync.Mutex
	next    int64              // oldest batch not yet settled
	settled map[int64]bool     // batches after next that are
	held    map[int64][]func() // writes of batches after next, in the order held
	moved   chan struct{}      // closed and replaced when next moves
}

func newBatchOrder(window int64) *batchOrder {
	return &batchOrder{window: window, next: 1, settled: make(map[int64]bool),
		held: make(map[int64][]func()), moved: make(chan struct{})}
}

// wait blocks until batch seq is within the window: with a window of 1,
// until every batch before it is settled.
func (o *batchOrder) wait(ctx context.Context, seq int64) error {
	for {
		o.mu.Lock()
		ok, moved := seq < o.next+o.window, o.moved
		o.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// hold keeps write until batch seq is settled and its turn has come; at
// once if it has.
func (o *batchOrder) hold(seq int64, write func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq < o.next {
		write()
		return
	}
	o.held[seq] = append(o.held[seq], write)
}

// settle notes that batch seq will not be delivered again, and makes the
// writes that are now next in order. Writing under the lock keeps the
// order; a slow output holds up deliveries, which is the backpressure
// wanted.
func (o *batchOrder) settle(seq int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.settled[seq] = true
	moved := false
	for o.settled[o.next] {
		for _, write := range o.held[o.next] {
			write()
		}
		delete(o.held, o.next)
		delete(o.settled, o.next)
		o.next++
		moved = true
	}
	if moved {
		close(o.moved)
		o.moved = make(chan struct{})
	}
}
